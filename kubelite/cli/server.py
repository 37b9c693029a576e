"""`kubelite server`: the control plane process (k3s-style flag names; every flag also reads KUBELITE_<FLAG>)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from kubelite.apiserver.config import ServerConfig
from kubelite.cli.common import pin_mmap_threshold


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def server(
    datastore_endpoint: Annotated[
        str,
        typer.Option(envvar="KUBELITE_DATASTORE_ENDPOINT", help="sqlite:///path, etcd://host:port,..., memory:// (default sqlite:///<data-dir>/state.db)"),
    ] = "",
    data_dir: Annotated[
        Path, typer.Option(envvar="KUBELITE_DATA_DIR", help="State, kubeconfig and certificates")
    ] = Path("/var/lib/kubelite/server"),
    bind_address: Annotated[str, typer.Option(envvar="KUBELITE_BIND_ADDRESS")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="KUBELITE_PORT", help="HTTPS port (TLS and authentication always on)")] = 6443,
    insecure_port: Annotated[
        int,
        typer.Option(envvar="KUBELITE_INSECURE_PORT", help="Plain HTTP WITHOUT authentication on 127.0.0.1:<port>, for local development (0 = off)"),
    ] = 0,
    tls_san: Annotated[
        list[str] | None,
        typer.Option(envvar="KUBELITE_TLS_SAN", help="Extra name or IP for the serving certificate (repeat, or comma-separated)"),
    ] = None,
    advertise_address: Annotated[
        str,
        typer.Option(envvar="KUBELITE_ADVERTISE_ADDRESS", help="Address in-cluster clients use (the kubernetes Service endpoints; default from --bind-address)"),
    ] = "",
    token: Annotated[
        str,
        typer.Option(envvar="KUBELITE_TOKEN", help="The cluster join token's secret (default: generated into <data-dir>/token)", show_default=False),
    ] = "",
    encryption_provider_config: Annotated[
        Path | None,
        typer.Option(envvar="KUBELITE_ENCRYPTION_PROVIDER_CONFIG", help="EncryptionConfiguration file: encrypt Secrets at rest (off by default)"),
    ] = None,
    rate_limit_qps: Annotated[
        float, typer.Option(envvar="KUBELITE_RATE_LIMIT_QPS", help="Requests/s per user (system:masters exempt; 0 = unlimited)")
    ] = 0.0,
    rate_limit_burst: Annotated[int, typer.Option(envvar="KUBELITE_RATE_LIMIT_BURST", help="Burst above --rate-limit-qps (default 2x qps)")] = 0,
    max_watches_per_user: Annotated[
        int, typer.Option(envvar="KUBELITE_MAX_WATCHES_PER_USER", help="Open watches per user (system:masters exempt; 0 = unlimited)")
    ] = 0,
    watch_buffer_bytes: Annotated[
        int, typer.Option(envvar="KUBELITE_WATCH_BUFFER_BYTES", help="Bytes queued for a watch client that stops reading before it is dropped")
    ] = 16 * 1024 * 1024,
    max_request_body_bytes: Annotated[int, typer.Option(envvar="KUBELITE_MAX_REQUEST_BODY_BYTES")] = 3 * 1024 * 1024,
    service_cidr: Annotated[str, typer.Option(envvar="KUBELITE_SERVICE_CIDR")] = "10.43.0.0/16",
    service_node_port_range: Annotated[str, typer.Option(envvar="KUBELITE_SERVICE_NODE_PORT_RANGE")] = "30000-32767",
    cluster_cidr: Annotated[
        str, typer.Option(envvar="KUBELITE_CLUSTER_CIDR", help="Pod network; each node gets a /24 of it (nodeipam)")
    ] = "10.244.0.0/16",
    compaction_interval: Annotated[
        float, typer.Option(envvar="KUBELITE_COMPACTION_INTERVAL", help="Seconds between history compactions")
    ] = 60.0,
    compaction_retain: Annotated[
        int, typer.Option(envvar="KUBELITE_COMPACTION_RETAIN", help="Revisions of history kept for watch resumes")
    ] = 10000,
    controllers: Annotated[
        str,
        typer.Option(
            envvar="KUBELITE_CONTROLLERS",
            help="Components to run in-process: '*' = all, '-name' disables one, '' = none "
            "(scheduler, replicaset, deployment, daemonset, statefulset, endpoints, nodelifecycle, garbagecollector, podgc, nodeipam)",
        ),
    ] = "*",
    node_monitor_grace_period: Annotated[
        float, typer.Option(envvar="KUBELITE_NODE_MONITOR_GRACE_PERIOD", help="Seconds without a heartbeat before a node is unreachable")
    ] = 10.0,
    default_toleration_seconds: Annotated[
        int, typer.Option(envvar="KUBELITE_DEFAULT_TOLERATION_SECONDS", help="Seconds pods stay on an unreachable node before eviction")
    ] = 5,
    pod_force_delete_after: Annotated[
        float,
        typer.Option(envvar="KUBELITE_POD_FORCE_DELETE_AFTER", help="Seconds without a heartbeat from a node before its terminating pods are force-deleted (must exceed the agents' --fencing-period)"),
    ] = 30.0,
    leader_elect: Annotated[
        bool | None,
        typer.Option(
            "--leader-elect/--no-leader-elect",
            envvar="KUBELITE_LEADER_ELECT",
            help="Run the controllers only while holding the leader Lease (default: on with an etcd datastore)",
        ),
    ] = None,
    leader_elect_lease_duration: Annotated[float, typer.Option(envvar="KUBELITE_LEADER_ELECT_LEASE_DURATION")] = 15.0,
    leader_elect_renew_deadline: Annotated[float, typer.Option(envvar="KUBELITE_LEADER_ELECT_RENEW_DEADLINE")] = 10.0,
    leader_elect_retry_period: Annotated[float, typer.Option(envvar="KUBELITE_LEADER_ELECT_RETRY_PERIOD")] = 2.0,
    log_level: Annotated[str, typer.Option(envvar="KUBELITE_LOG_LEVEL")] = "info",
) -> None:
    """Run the API server (with its datastore)."""
    pin_mmap_threshold()
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not 0 < port < 65536:
        _fail(f"--port {port} is out of range (1-65535)")
    if not 0 <= insecure_port < 65536 or insecure_port == port:
        _fail(f"--insecure-port {insecure_port} must be 0 (off) or a port other than --port")
    if rate_limit_qps < 0 or rate_limit_burst < 0 or max_watches_per_user < 0:
        _fail("--rate-limit-qps, --rate-limit-burst and --max-watches-per-user must be >= 0")
    if watch_buffer_bytes < 4096 or max_request_body_bytes < 4096:
        _fail("--watch-buffer-bytes and --max-request-body-bytes must be at least 4096")
    if encryption_provider_config is not None and not encryption_provider_config.is_file():
        _fail(f"--encryption-provider-config {encryption_provider_config} does not exist")
    if advertise_address:
        try:
            ipaddress.ip_address(advertise_address)
        except ValueError:
            _fail(f"--advertise-address {advertise_address!r} is not an IP address")
    sans = tuple(x.strip() for item in tls_san or [] for x in item.split(",") if x.strip())
    try:
        ipaddress.ip_address(bind_address)
    except ValueError:
        _fail(f"--bind-address {bind_address!r} is not an IP address")
    try:
        net = ipaddress.ip_network(service_cidr, strict=False)
    except ValueError:
        _fail(f"--service-cidr {service_cidr!r} is not a CIDR")
    if net.num_addresses < 8:
        _fail(f"--service-cidr {service_cidr} is too small")
    try:
        if ipaddress.ip_network(cluster_cidr, strict=False).prefixlen > 24:
            _fail(f"--cluster-cidr {cluster_cidr} is smaller than one /24")
    except ValueError:
        _fail(f"--cluster-cidr {cluster_cidr!r} is not a CIDR")
    try:
        low, high = (int(x) for x in service_node_port_range.split("-"))
        if not 0 < low <= high < 65536:
            raise ValueError
    except ValueError:
        _fail(f"--service-node-port-range {service_node_port_range!r} must look like 30000-32767")
    if compaction_interval <= 0 or compaction_retain < 0:
        _fail("--compaction-interval must be > 0 and --compaction-retain >= 0")
    config = ServerConfig(
        data_dir=data_dir,
        datastore_endpoint=datastore_endpoint,
        bind_address=bind_address,
        port=port,
        service_cidr=service_cidr,
        node_port_range=(low, high),
        compact_interval=compaction_interval,
        compact_retain=compaction_retain,
        insecure_port=insecure_port,
        tls_sans=sans,
        advertise_address=advertise_address,
        join_token=token,
        encryption_provider_config=encryption_provider_config,
        rate_limit_qps=rate_limit_qps,
        rate_limit_burst=rate_limit_burst,
        max_watches_per_user=max_watches_per_user,
        watch_buffer_bytes=watch_buffer_bytes,
        max_body_bytes=max_request_body_bytes,
    )
    from kubelite.apiserver.server import ServerStartError, serve_forever
    from kubelite.controllers.base import ControllerSettings
    from kubelite.controllers.manager import UnknownControllerError, select

    try:
        names = select(controllers)
    except UnknownControllerError as e:
        _fail(f"--controllers: {e}")
    if node_monitor_grace_period <= 0 or default_toleration_seconds < 0 or pod_force_delete_after <= 0:
        _fail("--node-monitor-grace-period and --pod-force-delete-after must be > 0, --default-toleration-seconds >= 0")
    settings = ControllerSettings(
        node_monitor_grace_period=node_monitor_grace_period,
        default_toleration_seconds=default_toleration_seconds,
        statefulset_force_delete_after=pod_force_delete_after,
        extra={"cluster_cidr": cluster_cidr},
    )
    from kubelite.controllers.leaderelection import LeaderElectionConfig

    election = None
    if leader_elect if leader_elect is not None else config.store_url.startswith(("etcd://", "etcds://")):
        try:
            election = LeaderElectionConfig(
                lease_duration=leader_elect_lease_duration,
                renew_deadline=leader_elect_renew_deadline,
                retry_period=leader_elect_retry_period,
            )
        except ValueError as e:
            _fail(f"--leader-elect-*: {e}")
    try:
        asyncio.run(serve_forever(config, names, settings, election))
    except ServerStartError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        pass
