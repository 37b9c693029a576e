"""Run the API server: open the store, bootstrap, serve, compact; stop cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from kubelite.apiserver.app import ApiServer
from kubelite.apiserver.config import ServerConfig
from kubelite.apiserver.masterendpoints import (
    advertise_address,
    reconcile_kubernetes_endpoints,
    run_endpoint_reconciler,
)
from kubelite.storage import StorageError, Store, open_store

if TYPE_CHECKING:
    from kubelite.client import ApiClient, ClientConfig
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
        for authorizer in self.api.authorizers:
            await authorizer.stop()  # type: ignore[attr-defined]
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
    if config.encryption_provider_config is not None:
        from kubelite.storage.encryption import EncryptionConfigError, load_encryption_config, wrap_store

        try:
            store = wrap_store(store, load_encryption_config(config.encryption_provider_config))
        except EncryptionConfigError as e:
            await store.close()
            raise ServerStartError(f"--encryption-provider-config: {e}") from None
        # Values written in plaintext or with an older key are rewritten with the first key now,
        # so turning encryption on (or rotating a key) takes effect for what is already stored.
        rewritten = await store.reencrypt()
        if rewritten:
            log.info("re-encrypted %d stored values with the current key", rewritten)
    api = ApiServer(store, config)
    # The address pods reach us at (the kubernetes Service's Endpoints, and a SAN): None on loopback.
    advertised = config.advertise_address or advertise_address(config.bind_address)
    try:
        await _secure(api, config, advertised)
    except (OSError, ValueError) as e:
        await store.close()
        raise ServerStartError(f"cannot set up the cluster PKI in {config.tls_path}: {e}") from None
    await api.objects.bootstrap()
    await _bootstrap_policy(api)
    # auto_decompress off: request bodies are taken as sent (a Content-Encoding other than identity
    # is refused with 415 by the app), so a body that lies about its encoding cannot break the parser.
    runner = web.AppRunner(api.make_app(), access_log=None, handler_cancellation=True, auto_decompress=False)
    await runner.setup()
    sites = [(config.bind_address, config.port, api.pki.server_ssl_context())]
    if config.insecure_port:
        sites.append(("127.0.0.1", config.insecure_port, None))  # plain HTTP: loopback only, always
    for host, port, ssl_context in sites:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            for authorizer in api.authorizers:
                await authorizer.stop()  # type: ignore[attr-defined]
            await store.close()
            if e.errno == errno.EADDRINUSE:
                raise ServerStartError(f"port {port} on {host} is already in use") from None
            raise ServerStartError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    running = RunningServer(api, store, runner)
    running.tasks.append(asyncio.create_task(_compactor(store, config)))
    if advertised:  # in-cluster clients reach us through the kubernetes Service (masterendpoints.py)
        await reconcile_kubernetes_endpoints(api.objects, advertised, config.port)
        running.tasks.append(asyncio.create_task(run_endpoint_reconciler(api.objects, advertised, config.port)))
    _write_admin_kubeconfig(config, api)
    api.ready = True
    return running


def _serving_sans(api: ApiServer, config: ServerConfig, advertised: str | None) -> list[str]:
    sans = [*config.tls_sans, api.objects.service_ips.kubernetes_ip, socket.gethostname()]
    if config.bind_address not in ("0.0.0.0", "::", ""):
        sans.append(config.bind_address)
    sans.append(advertised or "")
    return list(dict.fromkeys(s for s in sans if s))


async def _secure(api: ApiServer, config: ServerConfig, advertised: str | None) -> None:
    """PKI, join token, authenticators, authorizers and limits (see docs/security.md)."""
    from kubelite.apiserver.limits import RateLimiter, WatchLimiter
    from kubelite.auth.bootstrap import NodeBootstrap, load_or_create_token, parse_token
    from kubelite.auth.node import NodeAuthorizer
    from kubelite.auth.pki import ensure_cluster_pki
    from kubelite.auth.rbac import RBACAuthorizer
    from kubelite.auth.serviceaccount import ServiceAccountTokens, admit_pod

    loop = asyncio.get_running_loop()
    # Key generation and file writes: off the loop (the first start creates a CA and several certs).
    api.pki = await loop.run_in_executor(None, ensure_cluster_pki, config.tls_path, _serving_sans(api, config, advertised))
    token = load_or_create_token(config.data_dir, api.pki.ca.cert_pem, config.join_token)
    api.bootstrap = NodeBootstrap(api.objects, api.pki, parse_token(token)[1])
    api.sa_tokens = ServiceAccountTokens(
        api.pki.sa_key_pem, config.service_account_issuer, api.objects,
        (config.service_account_issuer, *config.extra_sa_audiences),
    )  # fmt: skip
    api.authenticator.token_authenticators.append(api.sa_tokens)
    api.objects.admit_pod = admit_pod
    api.objects.root_ca_pem = api.pki.ca.cert_pem.decode()
    node_authz, rbac = NodeAuthorizer(api.objects), RBACAuthorizer(api.objects)
    for authorizer in (node_authz, rbac):
        authorizer.start()
    for authorizer in (node_authz, rbac):
        await authorizer.wait_synced()
    api.authorizers = [node_authz, rbac]
    api.rbac, api.node_authz = rbac, node_authz
    if config.rate_limit_qps > 0:
        api.rate_limiter = RateLimiter(config.rate_limit_qps, config.rate_limit_burst or int(config.rate_limit_qps * 2) or 1)
    if config.max_watches_per_user > 0:
        api.watch_limiter = WatchLimiter(config.max_watches_per_user)


async def _bootstrap_policy(api: ApiServer) -> None:
    """RBAC's default roles and bindings (cluster-admin for system:masters, discovery for everyone
    authenticated), created once; later edits by the admin are kept."""
    from kubelite.api.registry import by_kind
    from kubelite.apiserver import errors
    from kubelite.auth.rbac import bootstrap_policy

    for obj in bootstrap_policy():
        rt = by_kind(obj["apiVersion"], obj["kind"])
        assert rt is not None
        try:
            await api.objects.create(rt, None, obj)
        except errors.StatusError as e:
            if e.code != 409:
                raise


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
    """The HTTPS URL at which this machine reaches the server."""
    host = config.bind_address
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{config.port}"


def _write_admin_kubeconfig(config: ServerConfig, api: ApiServer) -> None:
    from kubelite.client.kubeconfig import write_kubeconfig

    pki = api.pki
    write_kubeconfig(
        config.data_dir / "kubeconfig.yaml", server_url(config), ca_data=pki.ca.cert_pem,
        client_cert_data=pki.admin.cert_pem, client_key_data=pki.admin.key_pem,
    )  # fmt: skip


def loopback_client_config(config: ServerConfig, api: ApiServer) -> ClientConfig:
    """How the in-process controllers reach this server: HTTPS with the per-process loopback token."""
    from kubelite.client import ClientConfig

    return ClientConfig(servers=[server_url(config)], token=api.authenticator.loopback_token, ca_data=api.pki.ca.cert_pem)


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
    if config.insecure_port:
        log.warning("plain HTTP without authentication on http://127.0.0.1:%d (--insecure-port)", config.insecure_port)
    if controllers:
        from kubelite.client import ApiClient
        from kubelite.controllers.base import ControllerSettings
        from kubelite.controllers.manager import ControllerManager

        settings = settings or ControllerSettings()
        settings.extra["ca_pem"] = running.api.pki.ca.cert_pem.decode()  # the kube-root-ca.crt publisher

        # The controllers use the API like any client (loopback HTTPS): one code path, in or out of process.
        client = ApiClient(loopback_client_config(config, running.api))
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
