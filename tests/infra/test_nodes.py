"""Node checks, on every machine: units, listeners, kernel settings, the pod network, the version."""

from __future__ import annotations

import ipaddress

import pytest
from testinfra.host import Host

import kubelite
from kubelite.agent.netns import bridge_name
from kubelite.provision.deployer import API_PORT
from tests.infra.cluster import Api, InfraCluster, retry

SERVER_TLS = "/var/lib/kubelite/server/tls"  # the cluster CA and serving certificate (`kubelite server`)
AGENT_PORT = 10250  # the agent's logs/exec endpoint (`kubelite agent --agent-port` default)
LISTEN_WINDOW = 15.0  # a service can take seconds to bind after its unit started
VENV = "/opt/kubelite/venv"


def _unit_problems(host: Host, unit: str) -> list[str]:
    service = host.service(unit)
    problems = []
    if not service.is_running:
        problems.append(f"{unit}.service is not running")
    if not service.is_enabled:
        problems.append(f"{unit}.service is not enabled")
    return problems


def test_agent_unit_active_and_enabled(host: Host, machine: str) -> None:
    problems = _unit_problems(host, "kubelite-agent")
    assert not problems, f"{machine}: {'; '.join(problems)}"


@pytest.mark.roles("master")
def test_server_unit_active_and_enabled(host: Host, machine: str) -> None:
    problems = _unit_problems(host, "kubelite-server")
    assert not problems, f"{machine}: {'; '.join(problems)}"


@pytest.mark.roles("master")
def test_api_port_listening_and_ready(host: Host, machine: str) -> None:
    def check() -> list[str]:
        if not host.socket(f"tcp://0.0.0.0:{API_PORT}").is_listening:
            return [f"nothing listens on port {API_PORT}"]
        # HTTPS only, its certificate checked against the cluster CA the server made (/readyz needs no credential).
        ready = host.run(
            "python3 -c \"import ssl, urllib.request as u; "
            f"ctx = ssl.create_default_context(cafile='{SERVER_TLS}/ca.crt'); "
            f"print(u.urlopen('https://127.0.0.1:{API_PORT}/readyz', timeout=3, context=ctx).status)\""
        )
        return [] if ready.stdout.strip() == "200" else [f"/readyz on port {API_PORT} answered: {(ready.stderr or ready.stdout).strip()[-200:]}"]

    problems = retry(check, LISTEN_WINDOW)
    assert not problems, f"{machine}: {'; '.join(problems)}"


def test_agent_port_listening(host: Host, machine: str, cluster: InfraCluster) -> None:
    address = cluster.machine(machine).address

    def check() -> list[str]:
        listening = host.socket(f"tcp://{address}:{AGENT_PORT}").is_listening or host.socket(f"tcp://0.0.0.0:{AGENT_PORT}").is_listening
        return [] if listening else [f"the agent does not listen on {address}:{AGENT_PORT}"]

    problems = retry(check, LISTEN_WINDOW)
    assert not problems, f"{machine}: {'; '.join(problems)}"


def test_sysctls(host: Host, machine: str) -> None:
    problems = []
    if host.sysctl("net.ipv4.ip_forward") != 1:
        problems.append("net.ipv4.ip_forward is not 1 (pod traffic cannot cross nodes)")
    # Present only where br_netfilter is loaded; then bridged pod traffic must pass iptables (Services).
    if host.file("/proc/sys/net/bridge/bridge-nf-call-iptables").exists and host.sysctl("net.bridge.bridge-nf-call-iptables") != 1:
        problems.append("net.bridge.bridge-nf-call-iptables is not 1")
    assert not problems, f"{machine}: {'; '.join(problems)}"


def test_kernel_modules(host: Host, machine: str) -> None:
    virt = host.run("systemd-detect-virt --container").stdout.strip()
    if virt and virt != "none":
        pytest.skip(f"{machine} is a container ({virt}): kernel modules are its host's")
    loaded = {line.split()[0] for line in host.file("/proc/modules").content_string.splitlines() if line}
    builtin_fs = host.file("/proc/filesystems").content_string
    missing = [m for m in ("br_netfilter",) if m not in loaded]
    if "overlay" not in loaded and "overlay" not in builtin_fs:
        missing.append("overlay")
    assert not missing, f"{machine}: kernel modules not loaded: {', '.join(missing)}"


def test_pod_bridge_and_routes(host: Host, machine: str, api: Api) -> None:
    def check() -> list[str]:
        nodes = api.nodes()
        own = nodes.get(machine)
        if own is None:
            return [f"no Node {machine} in the API"]
        cidr = own.get("spec", {}).get("podCIDR")
        if not cidr:
            return [f"Node {machine} has no podCIDR"]
        net = ipaddress.ip_network(cidr)
        bridge = bridge_name(machine)
        problems = []
        addrs = host.run(f"ip -4 -o addr show dev {bridge}")
        if addrs.rc != 0:
            problems.append(f"pod bridge {bridge} is missing")
        elif f" {net.network_address + 1}/{net.prefixlen} " not in addrs.stdout + " ":
            problems.append(f"pod bridge {bridge} lacks the gateway {net.network_address + 1}/{net.prefixlen}")
        for name, node in sorted(nodes.items()):
            other = node.get("spec", {}).get("podCIDR")
            ip = next((a["address"] for a in node.get("status", {}).get("addresses") or [] if a.get("type") == "InternalIP"), None)
            if name == machine or not other or not ip:
                continue
            route = host.run(f"ip -4 route show {other}").stdout
            if f"via {ip} " not in route + " ":
                problems.append(f"no route to {name}'s pods {other} via {ip} (have: {route.strip() or 'none'})")
        return problems

    problems = retry(check, LISTEN_WINDOW)
    assert not problems, f"{machine}: {'; '.join(problems)}"


def test_kubelite_version_is_the_deployed_one(host: Host, machine: str, cluster: InfraCluster) -> None:
    out = host.run(f"{VENV}/bin/kubelite version --client")
    assert out.rc == 0, f"{machine}: `kubelite version --client` failed: {out.stderr.strip()}"
    assert f"Client Version: {kubelite.__version__} " in out.stdout, (
        f"{machine}: runs {out.stdout.strip()!r}, this checkout deploys {kubelite.__version__}"
    )
    marker = f"{VENV}/.kubelite-build-{cluster.build}"
    installed = host.run(f"ls -a {VENV}").stdout.split()
    assert host.file(marker).exists, (
        f"{machine}: build {cluster.build} is not installed "
        f"(found: {', '.join(f for f in installed if f.startswith('.kubelite-build-')) or 'none'})"
    )
