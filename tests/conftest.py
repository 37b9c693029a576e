"""Shared fixtures: a real `kubelite server` process on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    """A `kubelite server`: ``url`` is its plain-HTTP loopback port (--insecure-port, no
    authentication: most tests exercise API semantics), ``https_url`` the real, authenticated one;
    ``kubeconfig`` is the admin kubeconfig it wrote (HTTPS + admin client certificate)."""

    url: str
    port: int
    data_dir: Path
    kubeconfig: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    https_port: int = 0

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def token(self) -> str:
        """The full cluster join token (K10<ca hash>::server:<secret>)."""
        return (self.data_dir / "token").read_text().strip()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        from tests.helpers import stop_processes

        stop_processes(self.proc, sig=sig, timeout=timeout)
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(
    data_dir: Path,
    store_url: str | None = None,
    port: int | None = None,
    extra_args: list[str] | None = None,
    timeout: float = 20,
    https_port: int | None = None,
) -> ServerProcess:
    port = port or free_port()
    https_port = https_port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"server-{port}.log"
    args = [
        sys.executable, "-m", "kubelite", "server",
        "--insecure-port", str(port),
        "--port", str(https_port),
        "--data-dir", str(data_dir),
        "--datastore-endpoint", store_url or f"sqlite:///{data_dir}/state.db",
        *(extra_args or []),
    ]  # fmt: skip
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    server = ServerProcess(url, port, data_dir, data_dir / "kubeconfig.yaml", proc, log_path, https_port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kubelite server exited {proc.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"kubelite server not ready after {timeout}s:\n{server.log()}")


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One API server per test module (no controllers: API semantics alone), on SQLite, stopped by PID."""
    server = start_server(tmp_path_factory.mktemp("apiserver"), extra_args=["--controllers", ""])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kubeconfig_env(apiserver: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KUBECONFIG", str(apiserver.kubeconfig))
    return apiserver.kubeconfig


os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(Path(__file__).parent.parent / ".hypothesis"))


@dataclass
class InProcessServer:
    url: str
    api: object  # kubelite.apiserver.app.ApiServer
    client: object  # kubelite.client.ApiClient


@pytest.fixture
async def inproc_api() -> object:
    """A real API server on memory:// in this test's event loop, plus a client for it (fast)."""
    import tempfile

    from kubelite.apiserver.config import ServerConfig
    from kubelite.apiserver.server import start_server as start_inproc
    from kubelite.client import ApiClient

    with tempfile.TemporaryDirectory(prefix="kubelite-inproc-") as tmp:
        config = ServerConfig(data_dir=Path(tmp), datastore_endpoint="memory://", port=free_port(), insecure_port=free_port())
        running = await start_inproc(config)
        url = f"http://127.0.0.1:{config.insecure_port}"
        client = ApiClient(url)
        try:
            yield InProcessServer(url, running.api, client)
        finally:
            await client.close()
            await running.stop()
