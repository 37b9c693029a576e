"""Run the API server: open the store, bootstrap, serve, compact; stop cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from kubelite.apiserver.app import ApiServer
from kubelite.apiserver.config import ServerConfig
from kubelite.storage import StorageError, Store, open_store

if TYPE_CHECKING:
    from kubelite.client import ApiClient
    from kubelite.controllers.base import ControllerSettings
    from kubelite.controllers.leaderelection import LeaderElectionConfig
    from kubelite.controllers.manager import ControllerManager

log = logging.getLogger(__name__)


class ServerStartError(Exception):
    """A startup failure with a one-line message for the user (bad flag, datastore, port)."""


@dataclass
class RunningServer:
    api: ApiServer
    store: Store
    runner: web.AppRunner
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def stop(self) -> None:
        self.api.ready = False
        self.api.stopping.set()  # ends open watches now, so cleanup need not wait for their timeouts
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.api.objects.close()
        await self.runner.cleanup()
        await self.store.close()


async def _compactor(store: Store, config: ServerConfig) -> None:
    """Keep ``compact_retain`` revisions of history; older watch resumes get 410 and re-list."""
    while True:
        await asyncio.sleep(config.compact_interval)
        try:
            target = await store.current_revision() - config.compact_retain
            if target > await store.compact_revision():
                await store.compact(target)
        except StorageError as e:
            log.warning("compaction failed: %s", e)


async def start_server(config: ServerConfig) -> RunningServer:
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ServerStartError(f"cannot create data dir {config.data_dir}: {e.strerror}") from None
    try:
        store = open_store(config.store_url)
    except ValueError as e:
        raise ServerStartError(str(e)) from None
    try:
        await asyncio.wait_for(store.start(), 30)
        await store.current_revision()
    except (StorageError, OSError, TimeoutError) as e:
        raise ServerStartError(f"cannot open datastore {config.store_url}: {e or type(e).__name__}") from None
    api = ApiServer(store, config)
    await api.objects.bootstrap()
    runner = web.AppRunner(api.make_app(), access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, config.bind_address, config.port, reuse_address=True)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        await store.close()
        if e.errno == errno.EADDRINUSE:
            raise ServerStartError(f"port {config.port} on {config.bind_address} is already in use") from None
        raise ServerStartError(f"cannot listen on {config.bind_address}:{config.port}: {e.strerror}") from None
    running = RunningServer(api, store, runner)
    running.tasks.append(asyncio.create_task(_compactor(store, config)))
    _write_admin_kubeconfig(config)
    api.ready = True
    return running


async def _run_manager(manager: ControllerManager, client: ApiClient) -> None:
    try:
        await manager.run()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("controller manager failed")
        raise
    finally:
        await client.close()


def server_url(config: ServerConfig) -> str:
    host = config.bind_address
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.port}"


def _write_admin_kubeconfig(config: ServerConfig) -> None:
    from kubelite.client.kubeconfig import write_kubeconfig

    write_kubeconfig(config.data_dir / "kubeconfig.yaml", server_url(config))


async def serve_forever(
    config: ServerConfig,
    controllers: list[str] | None = None,
    settings: ControllerSettings | None = None,
    election: LeaderElectionConfig | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, running the scheduler and ``controllers`` in-process against ourselves.

    With ``election`` they run only while this server holds the leader Lease (several servers
    on one etcd: every one serves the API, one runs the controllers).
    """
    running = await start_server(config)
    log.info("kubelite API server listening on %s (datastore %s)", server_url(config), config.store_url)
    if controllers:
        from kubelite.client import ApiClient
        from kubelite.controllers.manager import ControllerManager

        # The controllers use the API like any client (loopback HTTP): one code path, in or out of process.
        client = ApiClient(server_url(config))
        manager = ControllerManager(client, controllers, settings, leader_elect=election is not None, election=election)
        running.tasks.append(asyncio.create_task(_run_manager(manager, client)))
        log.info("running %s", ", ".join(controllers))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await running.stop()
