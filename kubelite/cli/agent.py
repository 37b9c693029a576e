"""`kubelite agent`: the node agent process (every flag also reads KUBELITE_<FLAG>)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kubelite.cli.common import fail, pin_mmap_threshold

if TYPE_CHECKING:
    from kubelite.agent.routes import NetworkConfig


def _opt(env: str, help_: str = "") -> typer.models.OptionInfo:
    return typer.Option(envvar=f"KUBELITE_{env}", help=help_)


def agent(
    server: Annotated[str, _opt("SERVER", "API server URL(s), comma-separated")] = "",
    node_name: Annotated[str, _opt("NODE_NAME", "Node name (default: the hostname)")] = "",
    runtime: Annotated[str, _opt("RUNTIME", "Container runtime: runc, docker or fake")] = "runc",
    data_dir: Annotated[Path, _opt("DATA_DIR", "Agent state")] = Path("/var/lib/kubelite/agent"),
    node_ip: Annotated[str, _opt("NODE_IP", "InternalIP (default: the address that reaches the server)")] = "",
    node_labels: Annotated[str, _opt("NODE_LABELS", "k=v,...")] = "",
    node_taints: Annotated[str, _opt("NODE_TAINTS", "k=v:Effect,...")] = "",
    cpu: Annotated[str, _opt("CPU", "CPU capacity (default: this machine's; hollow: 4)")] = "",
    memory: Annotated[str, _opt("MEMORY", "Memory capacity (default: this machine's; hollow: 8Gi)")] = "",
    max_pods: Annotated[int, _opt("MAX_PODS")] = 110,
    hollow_count: Annotated[int, _opt("HOLLOW_COUNT", "Run N hollow (fake) nodes NAME-0..NAME-(N-1)")] = 0,
    heartbeat_interval: Annotated[float, _opt("HEARTBEAT_INTERVAL", "Seconds between lease renewals")] = 2.0,
    fencing_period: Annotated[
        float, _opt("FENCING_PERIOD", "Stop all pods after this many seconds without a lease renewal")
    ] = 20.0,
    agent_port: Annotated[
        int | None, _opt("AGENT_PORT", "Logs/exec endpoint port (default 10250; hollow nodes: any free port; 0 = any)")
    ] = None,
    registry: Annotated[str, _opt("REGISTRY", "OCI registries to pull images from, host:port[,host:port…]")] = "",
    pod_cidr: Annotated[str, _opt("POD_CIDR", "This node's pod CIDR (default: spec.podCIDR from the control plane)")] = "",
    cluster_cidr: Annotated[str, _opt("CLUSTER_CIDR", "The pod network of the whole cluster")] = "10.244.0.0/16",
    cluster_dns: Annotated[str, _opt("CLUSTER_DNS", "DNS address for pods (default: the node bridge's gateway)")] = "",
    cluster_domain: Annotated[str, _opt("CLUSTER_DOMAIN")] = "cluster.local",
    proxy: Annotated[bool, typer.Option("--proxy/--no-proxy", envvar="KUBELITE_PROXY", help="Run the Service proxy")] = True,
    dns: Annotated[bool, typer.Option("--dns/--no-dns", envvar="KUBELITE_DNS", help="Serve cluster DNS")] = True,
    network_sync_period: Annotated[
        float, _opt("NETWORK_SYNC_PERIOD", "Seconds between checks that repair routes and proxy rules")
    ] = 10.0,
    kubeconfig: Annotated[
        Path | None, _opt("KUBECONFIG", "Kubeconfig (instead of --server, or instead of joining with --token)")
    ] = None,
    token: Annotated[str, _opt("TOKEN", "Cluster join token (K10...) for an https --server")] = "",
    token_file: Annotated[Path | None, _opt("TOKEN_FILE", "File holding the cluster join token")] = None,
    log_level: Annotated[str, _opt("LOG_LEVEL")] = "info",
) -> None:
    """Run the node agent: register this node and run the pods bound to it."""
    pin_mmap_threshold()
    from kubelite.agent import (
        HollowNodes,
        NodeConfig,
        RuntimeOptions,
        create_runtime,
        parse_labels,
        parse_taints,
    )
    from kubelite.agent.agent import Agent
    from kubelite.agent.bootstrap import BootstrapError, ensure_node_credentials, node_tls_files
    from kubelite.agent.httpserver import agent_ssl_context
    from kubelite.agent.node import detect_node_ip, host_capacity
    from kubelite.agent.runtime import RuntimeFailure
    from kubelite.agent.runtimes import UnknownRuntimeError, check_runtime
    from kubelite.client import ApiClient, ClientConfig, KubeconfigError, load_kubeconfig

    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not runtime:
        fail("--runtime is required (runc, docker or fake)")
    try:
        check_runtime(runtime)  # before anything else: an unusable runtime is never replaced by another
    except UnknownRuntimeError as e:
        fail(str(e))
    node_name = (node_name or socket.gethostname()).lower()
    try:
        labels = parse_labels(node_labels)
        taints = parse_taints(node_taints)
    except ValueError as e:
        fail(str(e))
    if hollow_count < 0:
        fail("--hollow-count must not be negative")
    if hollow_count and runtime != "fake":
        fail(f"hollow nodes use the fake runtime, not {runtime!r} (use --runtime fake)")
    servers = [s.strip().rstrip("/") for s in server.split(",") if s.strip()]
    join_token = _join_token(token, token_file)
    # An explicit kubeconfig wins; https servers are joined with the token (node credentials);
    # plain http servers (the development insecure port) need no credentials.
    https = [s for s in servers if s.lower().startswith("https://")]
    join = kubeconfig is None and bool(https)
    if join:
        if len(https) != len(servers):
            fail("--server mixes http and https URLs; use one scheme")
        if not join_token:
            fail(f"--server {https[0]} is https: pass the cluster join token (--token or --token-file) or --kubeconfig")
        if hollow_count:
            fail("hollow nodes cannot join with a token (each would need its own credential); use --kubeconfig")
    try:
        if kubeconfig is not None or not servers:
            config = load_kubeconfig(str(kubeconfig) if kubeconfig else None)
        else:
            config = ClientConfig(servers=servers)  # when joining: replaced by the node's credentials below
    except KubeconfigError as e:
        fail(str(e) if kubeconfig is not None else f"no --server given and {e}")
    hollow = hollow_count > 0
    host_cpu, host_memory = ("4", "8Gi") if hollow else host_capacity()
    node_config = NodeConfig(
        name=node_name,
        node_ip=node_ip or detect_node_ip(config.servers[0] if config.servers else None),
        labels=labels,
        taints=taints,
        cpu=cpu or host_cpu,
        memory=memory or host_memory,
        max_pods=max_pods,
        hollow=hollow,
        heartbeat_interval=heartbeat_interval,
        fencing_period=fencing_period,
        agent_port=agent_port if agent_port is not None else (0 if hollow_count > 0 else 10250),
    )
    registries = tuple(r.strip() for r in registry.split(",") if r.strip())
    try:
        node_config.validate()
        network = _network_config(pod_cidr, cluster_cidr, cluster_dns, cluster_domain, proxy, dns,
                                  network_sync_period)
        rt = None if hollow else create_runtime(
            runtime, RuntimeOptions(node_name=node_name, data_dir=data_dir, registries=registries,
                                    pod_cidr=network.pod_cidr, cluster_dns=network.cluster_dns,
                                    cluster_domain=network.cluster_domain if dns else None)
        )
    except (ValueError, UnknownRuntimeError, RuntimeFailure) as e:
        fail(str(e))
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"cannot create --data-dir {data_dir}: {e.strerror or e}")
    if not hollow:
        node_config.ephemeral_storage = f"{shutil.disk_usage(data_dir).total // 1024}Ki"
        node_config.runtime_version = str(getattr(rt, "version", node_config.runtime_version))
    agent_tls = None
    if join:
        try:
            config = asyncio.run(
                ensure_node_credentials(data_dir, servers, join_token, node_name, [node_config.node_ip]))
            files = node_tls_files(data_dir)
            agent_tls = agent_ssl_context(files.serving_cert, files.serving_key, files.ca)
        except BootstrapError as e:
            fail(str(e))
        except (OSError, ValueError) as e:
            fail(f"cannot use the node credentials in {data_dir}: {e}")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with ApiClient(config) as client:
            if rt is None:
                opts = {f: getattr(node_config, f) for f in (
                    "labels", "taints", "cpu", "memory", "max_pods", "node_ip", "heartbeat_interval", "fencing_period",
                    "agent_port",
                )}
                nodes = HollowNodes(client, node_name, hollow_count, data_dir=data_dir, **opts)
                await nodes.start()
                logging.getLogger("kubelite.agent").info("%d hollow nodes running", hollow_count)
                try:
                    await stop.wait()
                finally:
                    await nodes.stop()
            else:
                single = Agent(client, node_config, rt, network=network, agent_tls=agent_tls)
                await single.start()
                try:
                    await stop.wait()
                finally:
                    await single.stop()

    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(main())
        except Exception as e:
            from kubelite.cli.common import format_error

            fail(format_error(e))


def _join_token(token: str, token_file: Path | None) -> str:
    """The join token from --token or --token-file (one of them at most)."""
    if token and token_file is not None:
        fail("give --token or --token-file, not both")
    if token_file is None:
        return token.strip()
    try:
        value = token_file.read_text().strip()
    except OSError as e:
        fail(f"cannot read --token-file {token_file}: {e.strerror or e}")
    if not value:
        fail(f"--token-file {token_file} is empty")
    return value


def _network_config(
    pod_cidr: str, cluster_cidr: str, cluster_dns: str, cluster_domain: str, proxy: bool, dns: bool, sync_period: float
) -> NetworkConfig:
    """Validated networking flags (ValueError names the bad flag)."""
    import ipaddress

    from kubelite.agent.routes import NetworkConfig

    try:
        cluster = ipaddress.ip_network(cluster_cidr, strict=False)
    except ValueError:
        raise ValueError(f"--cluster-cidr {cluster_cidr!r} is not a CIDR") from None
    if pod_cidr:
        try:
            pod = ipaddress.ip_network(pod_cidr, strict=False)
        except ValueError:
            raise ValueError(f"--pod-cidr {pod_cidr!r} is not a CIDR") from None
        if pod.version != cluster.version or not pod.subnet_of(cluster):  # type: ignore[arg-type]
            raise ValueError(f"--pod-cidr {pod_cidr} is not inside --cluster-cidr {cluster_cidr}")
    if cluster_dns:
        try:
            ipaddress.ip_address(cluster_dns)
        except ValueError:
            raise ValueError(f"--cluster-dns {cluster_dns!r} is not an IP address") from None
    if sync_period <= 0:
        raise ValueError("--network-sync-period must be > 0")
    return NetworkConfig(
        cluster_cidr=str(cluster), pod_cidr=str(ipaddress.ip_network(pod_cidr, strict=False)) if pod_cidr else None,
        cluster_dns=cluster_dns or None, cluster_domain=cluster_domain.strip(".") or "cluster.local",
        proxy=proxy, dns=dns, sync_period=sync_period,
    )
