"""The API server's settings (filled from CLI flags / KUBELITE_* env by ``kubelite server``)."""

from __future__ import annotations

from dataclasses import dataclass, field
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
    # Security (see docs/security.md). TLS with authentication is always on `port`; plain HTTP
    # without authentication only on `insecure_port` (loopback only, 0 = off), for development.
    insecure_port: int = 0
    tls_dir: Path | None = None  # CA, serving and client certificates; default <data_dir>/tls
    tls_sans: tuple[str, ...] = ()
    # The address pods reach this server at (the kubernetes Service's Endpoints); default: the
    # --bind-address, or with 0.0.0.0 the default route's source address; none for loopback.
    advertise_address: str = ""  # extra names/IPs for the serving certificate (every master's)
    join_token: str = ""  # the cluster join token's secret; default: generated into <data_dir>/token
    encryption_provider_config: Path | None = None  # EncryptionConfiguration for Secrets at rest
    # Abuse limits, per authenticated user (0 = unlimited). system:masters is exempt from the rate.
    rate_limit_qps: float = 0.0
    rate_limit_burst: int = 0
    max_watches_per_user: int = 0
    # A watch whose client stops reading is dropped once this many bytes wait for it.
    watch_buffer_bytes: int = 16 * 1024 * 1024
    service_account_issuer: str = "https://kubernetes.default.svc.cluster.local"
    extra_sa_audiences: list[str] = field(default_factory=list)

    @property
    def tls_path(self) -> Path:
        return self.tls_dir or self.data_dir / "tls"

    @property
    def store_url(self) -> str:
        return self.datastore_endpoint or f"sqlite:///{self.data_dir / 'state.db'}"
