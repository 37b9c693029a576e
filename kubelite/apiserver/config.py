"""The API server's settings (filled from CLI flags / KUBELITE_* env by ``kubelite server``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ServerConfig:
    data_dir: Path = Path("/var/lib/kubelite/server")
    datastore_endpoint: str = ""  # default: sqlite:///<data_dir>/state.db
    bind_address: str = "127.0.0.1"
    port: int = 6443
    service_cidr: str = "10.43.0.0/16"
    node_port_range: tuple[int, int] = (30000, 32767)
    max_body_bytes: int = 3 * 1024 * 1024  # kube-apiserver's limit is 3 MiB too
    # Watch history kept before compaction (revisions); compaction runs every compact_interval seconds.
    compact_retain: int = 10000
    compact_interval: float = 60.0
    bookmark_interval: float = 10.0
    # Longest watch a client may hold before the server ends it (clients re-watch from the last RV).
    max_watch_seconds: int = 1800

    @property
    def store_url(self) -> str:
        return self.datastore_endpoint or f"sqlite:///{self.data_dir / 'state.db'}"
