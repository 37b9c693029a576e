"""`kubelite cluster` end to end on systemd-nspawn machines (the embedded default), as root.

One cluster for the module, its steps in order: up (1 master + 2 workers, all Ready), a second up
that reports no changes, the secrets kept secret (issue #10, helpers in test_provision_secrets.py:
nothing printed or logged, 0600 files, kubectl over https, 401 without credentials), a DaemonSet on every node, add-node (the new worker gets its pod),
remove-node (drained and gone), the ssh provider over the same machines as existing hosts (no
machine created), and down, after which no machine, process, bridge, mount, iptables rule or
route of the cluster is left. The node image is cached under .cache/ (first build ~30 s).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelite.auth.bootstrap import node_password_secret_name
from kubelite.client import ApiClient, load_kubeconfig
from kubelite.controllers.base import DAEMONSETS, NODES, PODS, SECRETS
from kubelite.provision.state import SECRET_FILES
from tests.helpers import eventually
from tests.integration.test_provision_secrets import leaks, mode, secret_values, shown_files

ROOT = Path(__file__).resolve().parents[2]
NAME = "kltest"
NODE_NET, POD_NET, SVC_NET = "10.249.0.0/24", "10.249.64.0/18", "10.249.128.0/20"
SPEC: dict[str, Any] = {
    "name": NAME, "provider": "nspawn", "masters": 1, "workers": 2, "runtime": "runc",
    "resources": {"cpu": 2, "memory": "1Gi"}, "images": ["busybox"],
    "network": {"nodes": NODE_NET, "pods": POD_NET, "services": SVC_NET},
}  # fmt: skip
DAEMONSET = {
    "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "probe", "namespace": "default"},
    "spec": {"selector": {"matchLabels": {"app": "probe"}}, "template": {
        "metadata": {"labels": {"app": "probe"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:latest", "command": ["sleep", "3600"]}]}}},
}  # fmt: skip

# Needs root (machines, a bridge, routes): as CI runs it. Not skipped otherwise: up fails saying so.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


class Cluster:
    def __init__(self, state_root: Path, spec_file: Path) -> None:
        self.state_root = state_root
        self.spec_file = spec_file
        self.env = {**os.environ, "KUBELITE_STATE_DIR": str(state_root)}
        self.printed: list[str] = []  # everything `kubelite cluster ...` printed, for the secrets check

    @property
    def dir(self) -> Path:
        return self.state_root / NAME

    def cli(self, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "kubelite", "cluster", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip
        self.printed.append(f"$ kubelite cluster {' '.join(args)}\n{proc.stdout}{proc.stderr}")
        return proc

    def on(self, node: str, command: str) -> str:
        """``command`` run on ``node`` through `kubelite cluster ssh` (the provider's way in)."""
        return self.ok("ssh", NAME, node, command)

    def ok(self, *args: str) -> str:
        proc = self.cli(*args)
        assert proc.returncode == 0, f"kubelite cluster {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout + proc.stderr

    def machines(self) -> list[dict[str, Any]]:
        machines: list[dict[str, Any]] = json.loads((self.dir / "machines.json").read_text())
        return machines

    def api(self) -> ApiClient:
        return ApiClient(load_kubeconfig(str(self.dir / "kubeconfig")), timeout=10)


def _nspawn_pids(prefix: str) -> list[int]:
    """Live systemd-nspawn processes of machines named ``prefix...`` (zombies have no cmdline)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"systemd-nspawn") and any(a.startswith(f"--machine={prefix}".encode()) for a in argv):
                pids.append(int(proc.name))
    return pids


def _leftovers(state_root: Path) -> list[str]:
    """Everything of the cluster that may still be on this host."""
    found = [f"process {p}" for p in _nspawn_pids(f"{NAME}-")]
    if subprocess.run(["ip", "link", "show", f"klc-{NAME}"], capture_output=True).returncode == 0:
        found.append(f"bridge klc-{NAME}")
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    found += [f"route {line}" for line in routes.splitlines() if "10.249." in line]
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    found += [f"iptables {r}" for r in rules.splitlines() if f"kubelite:{NAME}" in r]
    mounts = Path("/proc/self/mountinfo").read_text()
    found += [f"mount {line.split()[4]}" for line in mounts.splitlines() if str(state_root) in line.split()[4]]
    found += [f"settings {p}" for p in Path("/run/systemd/nspawn").glob(f"{NAME}-*")]
    if (state_root / NAME).exists():
        found.append(f"state dir {state_root / NAME}")
    return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("cluster")
    spec_file = base / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    c = Cluster(base / "state", spec_file)
    try:
        yield c
    finally:
        for name in ("ext", NAME):  # a failed test must not leave machines behind
            if (c.state_root / name / "spec.yaml").exists():
                c.cli("down", name, timeout=120)


def test_up_brings_all_nodes_ready(cluster: Cluster) -> None:
    out = cluster.ok("up", str(cluster.spec_file))
    for phase in ("image", "machines", "packages", "control plane", "agents", "Ready"):
        assert f"✓ {phase}" in out
    names = [m["name"] for m in cluster.machines()]
    assert sorted(names) == [f"{NAME}-master-0", f"{NAME}-worker-0", f"{NAME}-worker-1"]
    assert len(_nspawn_pids(f"{NAME}-")) == 3

    async def ready() -> list[str]:
        async with cluster.api() as client:
            nodes = (await client.list(NODES))["items"]
        return sorted(n["metadata"]["name"] for n in nodes
                      if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"]))  # fmt: skip

    assert asyncio.run(ready()) == sorted(names)


def test_second_up_reports_no_changes(cluster: Cluster) -> None:
    out = cluster.ok("up", str(cluster.spec_file))
    assert f"cluster {NAME}: 3 node(s) Ready, no changes" in " ".join(out.split())


def test_no_secret_in_output_logs_or_state(cluster: Cluster) -> None:
    secrets = secret_values(cluster.dir)
    sources = {f"output of `{out.splitlines()[0][2:]}`": out for out in cluster.printed}
    # pyinfra's log and JSON results (every operation's arguments) are among the state dir's files.
    assert {f"deploy-{p}.{ext}" for p in ("packages", "control-plane", "agents") for ext in ("log", "json")} <= {
        p.name for p in shown_files(cluster.dir)}  # fmt: skip
    sources |= {f"state file {p.name}": p.read_text(errors="replace") for p in shown_files(cluster.dir)}
    for m in cluster.machines():
        sources[f"{m['name']}: kubelite journals"] = cluster.on(
            m["name"], "journalctl -u kubelite-server -u kubelite-agent --no-pager -o cat")
        sources[f"{m['name']}: process command lines"] = cluster.on(m["name"], "ps -eo args")
    assert sum("kubelite agent" in text for text in sources.values()) >= 3  # the journals and ps were read
    found = {where: what for where, text in sources.items() if (what := leaks(text, secrets))}
    assert found == {}, f"secrets shown: {found}"


def test_credentials_are_0600_on_the_machines_and_here(cluster: Cluster) -> None:
    listing = "stat -c '%a %U %n' /etc/kubelite/*.env $(find /var/lib/kubelite -name '*.key' -o -name token -o -name kubeconfig -o -name kubeconfig.yaml -o -name node-password)"
    for m in cluster.machines():
        files = {line.split()[2]: line.split()[:2] for line in cluster.on(m["name"], listing).splitlines() if line.strip()}
        expected = {"/etc/kubelite/agent.env", "/var/lib/kubelite/agent/kubeconfig",
                    "/var/lib/kubelite/agent/tls/client.key", "/var/lib/kubelite/agent/tls/serving.key"}  # fmt: skip
        if m["role"] == "master":
            expected |= {"/etc/kubelite/server.env", "/var/lib/kubelite/server/token", "/var/lib/kubelite/server/tls/ca.key",
                         "/var/lib/kubelite/server/tls/server.key", "/var/lib/kubelite/server/tls/admin.key"}  # fmt: skip
        assert expected <= set(files), f"{m['name']}: missing {sorted(expected - set(files))}"
        loose = {path: perm for path, perm in files.items() if perm != ["600", "root"]}
        assert loose == {}, f"{m['name']}: credentials not 0600 root: {loose}"
    assert mode(cluster.dir) == 0o700
    here = {name: oct(mode(cluster.dir / name)) for name in SECRET_FILES if (cluster.dir / name).exists()}
    assert here == {name: "0o600" for name in SECRET_FILES}, here


def test_kubectl_lists_the_nodes_over_https_with_the_fetched_kubeconfig(cluster: Cluster) -> None:
    kubeconfig = cluster.dir / "kubeconfig"
    assert cluster.ok("kubeconfig", NAME, "--path").strip() == str(kubeconfig)
    master = next(m for m in cluster.machines() if m["role"] == "master")
    assert load_kubeconfig(str(kubeconfig)).server == f"https://{master['address']}:6443"
    proc = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "get", "nodes", "-o", "name"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.split()) == sorted(f"node/{m['name']}" for m in cluster.machines())


def test_anonymous_request_to_the_api_is_refused(cluster: Cluster) -> None:
    config = load_kubeconfig(str(cluster.dir / "kubeconfig"))
    assert config.ca_data is not None
    verified = ssl.create_default_context(cadata=config.ca_data.decode())  # the cluster CA, no client cert
    with urllib.request.urlopen(config.server + "/readyz", context=verified, timeout=10) as r:
        assert r.status == 200  # the health endpoints stay open
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(config.server + "/api/v1/nodes", context=verified, timeout=10)
    assert refused.value.code == 401
    with pytest.raises(OSError):  # no plain HTTP on the API port
        urllib.request.urlopen(config.server.replace("https://", "http://") + "/api/v1/nodes", timeout=10)


async def _ds_pods(cluster: Cluster) -> dict[str, str]:
    """node -> phase of the DaemonSet's pod there."""
    async with cluster.api() as client:
        pods = (await client.list(PODS, "default", label_selector="app=probe"))["items"]
    return {p["spec"].get("nodeName", ""): p["status"].get("phase", "") for p in pods if not p["metadata"].get("deletionTimestamp")}


def test_daemonset_runs_on_every_node(cluster: Cluster) -> None:
    async def body() -> None:
        async with cluster.api() as client:
            await client.create(DAEMONSETS, DAEMONSET, "default")
        nodes = {m["name"] for m in cluster.machines()}

        async def all_running() -> bool:
            pods = await _ds_pods(cluster)
            return set(pods) == nodes and set(pods.values()) == {"Running"}

        await eventually(all_running, timeout=90, what="a Running DaemonSet pod on every node", interval=1)

    asyncio.run(body())


def test_add_node_joins_and_gets_its_daemonset_pod(cluster: Cluster) -> None:
    out = cluster.ok("add-node", NAME)
    assert f"added {NAME}-worker-2" in out
    assert len(_nspawn_pids(f"{NAME}-")) == 4

    async def new_pod_running() -> bool:
        return (await _ds_pods(cluster)).get(f"{NAME}-worker-2") == "Running"

    asyncio.run(eventually(new_pod_running, timeout=90, what="the DaemonSet pod on the new node", interval=1))


def test_remove_node_drains_and_deletes_it(cluster: Cluster) -> None:
    gone = f"{NAME}-worker-0"
    bare = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pinned", "namespace": "default"},
            "spec": {"nodeName": gone, "terminationGracePeriodSeconds": 1, "containers": [{"name": "c", "image": "busybox:latest", "command": ["sleep", "3600"]}]}}  # fmt: skip

    async def pinned_running() -> bool:
        async with cluster.api() as client:
            return bool((await client.get(PODS, "pinned", "default"))["status"].get("phase") == "Running")

    async def start_pinned() -> None:
        async with cluster.api() as client:
            await client.create(PODS, bare, "default")
        await eventually(pinned_running, timeout=60, what="a pod on the node to drain", interval=1)

    asyncio.run(start_pinned())
    out = cluster.ok("remove-node", NAME, gone)
    assert "1 pod(s) evicted" in out  # the pinned pod; DaemonSet pods are left to go with the node
    assert gone not in [m["name"] for m in cluster.machines()]
    assert not _nspawn_pids(gone)
    assert not (cluster.dir / "machines" / gone).exists()

    async def password_kept() -> bool:
        async with cluster.api() as client:
            secrets = (await client.list(SECRETS, "kube-system"))["items"]
        return node_password_secret_name(gone) in [s["metadata"]["name"] for s in secrets]

    # Its node-password Secret went with it: a new machine may join under the name.
    assert not asyncio.run(password_kept())

    async def node_gone() -> bool:
        async with cluster.api() as client:
            names = [n["metadata"]["name"] for n in (await client.list(NODES))["items"]]
        return gone not in names and gone not in await _ds_pods(cluster)

    asyncio.run(eventually(node_gone, timeout=60, what=f"{gone} and its pods gone from the API", interval=1))
    status = cluster.ok("status", NAME)
    assert gone not in status and f"{NAME}-worker-2" in status


def test_ssh_provider_converges_existing_hosts_without_creating_any(cluster: Cluster) -> None:
    hosts = [{"name": m["name"], "address": m["address"], "role": m["role"]} for m in cluster.machines()]
    ext = {k: v for k, v in SPEC.items() if k not in ("masters", "workers")}
    ext.update(name="ext", provider="ssh", hosts=hosts, ssh={"user": "root", "key": str(cluster.dir / "id_ed25519")})
    ext_file = cluster.spec_file.with_name("ext.yaml")
    ext_file.write_text(yaml.safe_dump(ext))
    before = sorted(_nspawn_pids(NAME))  # only this cluster's: other clusters may share the host
    out = cluster.ok("up", str(ext_file))
    # The same machines, the same settings: the deploy finds nothing to change and creates nothing.
    assert f"cluster ext: {len(hosts)} node(s) Ready, no changes" in " ".join(out.split())
    assert sorted(_nspawn_pids(NAME)) == before and not _nspawn_pids("ext")
    cluster.ok("down", "ext")  # the teardown deploy: kubelite leaves the hosts, the machines stay
    assert sorted(_nspawn_pids(NAME)) == before and not _nspawn_pids("ext")
    assert not (cluster.state_root / "ext").exists()


def test_down_leaves_nothing_behind(cluster: Cluster) -> None:
    assert _leftovers(cluster.state_root)  # the check sees the running cluster
    cluster.ok("down", NAME)
    assert _leftovers(cluster.state_root) == []
