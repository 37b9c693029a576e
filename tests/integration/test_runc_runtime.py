"""The runc runtime against the real runc, kernel namespaces, cgroups and a node bridge (needs root).

Every test gets its own node name (so its own bridge, runc root and cgroup subtree) and pod CIDR in
10.244.200-254.0/24. While a test runs, an ``unreachable`` route covers that CIDR at a high metric:
the node bridge's own route overrides it, and anything the bridge does not serve fails locally
instead of leaving the machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelite.agent import cgroups
from kubelite.agent.images import ImageStore
from kubelite.agent.netns import bridge_name, netns_path
from kubelite.agent.runtime import (
    LABEL_ATTEMPT,
    LABEL_CONTAINER_NAME,
    LABEL_POD_UID,
    ContainerConfig,
    ContainerState,
    CreateContainerError,
    RuntimeOptions,
    SandboxState,
)
from kubelite.agent.runtimes import create_runtime
from kubelite.agent.runtimes.runc import RuncRuntime, config_from_spec, oci_spec, resolve_args
from kubelite.images.build import build_busybox

IMAGE = "busybox:runc-test"
GUARD_METRIC = "4242"

pytestmark = pytest.mark.slow


def _require_host() -> None:
    # These tests exist to exercise the real thing: a missing tool is a broken setup, not a skip.
    assert os.geteuid() == 0, "the runc runtime tests need root"
    for tool in ("runc", "ip", "unshare"):
        assert shutil.which(tool), f"{tool} is not installed (scripts/setup.sh installs runc and iproute2)"
    assert Path("/bin/busybox").is_file(), "busybox-static is not installed"


@pytest.fixture(scope="module")
def image_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _require_host()
    tar = tmp_path_factory.mktemp("image") / "busybox.tar"
    build_busybox(IMAGE).write(tar)
    return tar


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@pytest.fixture
def pod_cidr() -> Iterator[str]:
    for _ in range(50):
        cidr = f"10.244.{random.randint(200, 254)}.0/24"
        if not _ip("route", "show", cidr).stdout.strip():
            break
    else:
        raise AssertionError("no free test pod CIDR in 10.244.200-254.0/24")
    _ip("route", "add", "unreachable", cidr, "metric", GUARD_METRIC)
    try:
        yield cidr
    finally:
        _ip("route", "del", "unreachable", cidr, "metric", GUARD_METRIC, check=False)


def _new_runtime(data_dir: Path, node: str, cidr: str) -> RuncRuntime:
    return RuncRuntime(RuntimeOptions(node_name=node, data_dir=data_dir, pod_cidr=cidr), pids_limit=64)


@pytest.fixture
async def runtime(tmp_path: Path, image_tar: Path, pod_cidr: str) -> AsyncIterator[RuncRuntime]:
    node = f"rt-{uuid.uuid4().hex[:8]}"
    rt = _new_runtime(tmp_path / "node", node, pod_cidr)
    ImageStore(rt.paths.root / "images").import_archive(image_tar)
    try:
        yield rt
    finally:
        await rt.reset()
        _assert_node_gone(rt)


def _mounts_under(path: Path) -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(str(path))]


def _assert_node_gone(rt: RuncRuntime) -> None:
    assert _ip("link", "show", bridge_name(rt.node_name), check=False).returncode != 0, "bridge left behind"
    assert rt.network.ipam().allocations() == {}
    for mount in rt.layout.mounts:
        assert not (mount / "kubelite" / rt.node_name).exists(), f"cgroup left in {mount}"
    assert _mounts_under(rt.paths.root) == []
    assert list((rt.paths.root / "containers").iterdir()) == []
    assert list((rt.paths.root / "sandboxes").iterdir()) == []


def pod(name: str, containers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())},
        "spec": {"containers": containers},
    }


async def run(rt: RuncRuntime, p: dict[str, Any], c: dict[str, Any], sandbox_id: str, attempt: int = 0) -> str:
    cid = await rt.create_container(sandbox_id, p, c, attempt, {}, [], config_from_spec(c, {}, []))
    await rt.start_container(cid)
    return cid


async def wait_exited(rt: RuncRuntime, cid: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = await rt.container_status(cid)
        if st.state is ContainerState.EXITED:
            return st
        await asyncio.sleep(0.05)
    raise AssertionError(f"container {cid} did not exit")


def _cgroup_value(rt: RuncRuntime, controller: str, cg: str, v1: str, v2: str) -> str:
    d = rt.layout.controller_dir(controller, cg)
    assert d is not None
    return (d / (v1 if rt.layout.version == 1 else v2)).read_text().strip()


# --- pure parts -----------------------------------------------------------------------------------


def test_command_resolution_follows_kubernetes() -> None:
    image = {"Entrypoint": ["/entry"], "Cmd": ["default"]}
    both = ContainerConfig(name="c", image="i", command=["/bin/x"], args=["a"])
    assert resolve_args(both, image) == ["/bin/x", "a"]
    only_command = ContainerConfig(name="c", image="i", command=["/bin/x"])
    assert resolve_args(only_command, image) == ["/bin/x"]
    only_args = ContainerConfig(name="c", image="i", args=["a", "b"])
    assert resolve_args(only_args, image) == ["/entry", "a", "b"]
    assert resolve_args(ContainerConfig(name="c", image="i"), image) == ["/entry", "default"]


def test_oci_spec_joins_the_pod_sandbox(tmp_path: Path) -> None:
    c = {"name": "app", "image": IMAGE, "resources": {"limits": {"memory": "32Mi", "cpu": "250m"}},
         "securityContext": {"runAsUser": 1000, "capabilities": {"drop": ["NET_RAW"], "add": ["NET_ADMIN"]}}}
    spec = oci_spec(
        pod=pod("p", [c]), container=c, config=config_from_spec(c, {"A": "1"}, []),
        image_config={"Env": ["PATH=/bin", "A=0"], "Cmd": ["sh"]}, rootfs=tmp_path, hostname="p",
        netns=Path("/var/run/netns/kl-x"), ipcns=tmp_path / "ipc", etc_files={"/etc/hosts": tmp_path / "hosts"},
        cgroups_path="/kubelite/n/u/c", pids_limit=64,
    )
    ns = {n["type"]: n.get("path") for n in spec["linux"]["namespaces"]}
    assert ns == {"pid": None, "mount": None, "uts": None, "network": "/var/run/netns/kl-x",
                  "ipc": str(tmp_path / "ipc")}
    assert spec["process"]["args"] == ["sh"] and "A=1" in spec["process"]["env"]
    assert spec["process"]["user"]["uid"] == 1000
    caps = spec["process"]["capabilities"]["bounding"]
    assert "CAP_NET_ADMIN" in caps and "CAP_NET_RAW" not in caps and "CAP_SYS_ADMIN" not in caps
    assert spec["linux"]["resources"]["memory"]["limit"] == 32 * 1024 * 1024
    assert spec["linux"]["resources"]["pids"]["limit"] == 64
    assert spec["linux"]["cgroupsPath"] == "/kubelite/n/u/c"
    assert "/proc/kcore" in spec["linux"]["maskedPaths"]
    assert any(m["destination"] == "/etc/hosts" and m["type"] == "bind" for m in spec["mounts"])


def test_runc_is_the_registered_runtime(tmp_path: Path, pod_cidr: str) -> None:
    _require_host()
    rt = create_runtime("runc", RuntimeOptions(node_name=f"rt-{uuid.uuid4().hex[:8]}", data_dir=tmp_path,
                                               pod_cidr=pod_cidr))
    assert isinstance(rt, RuncRuntime) and rt.version.startswith("runc://1.")


# --- real containers --------------------------------------------------------------------------------


HTTPD = ("echo serving; mkdir -p /www && echo hello-from-pod > /www/index.html && "
         "exec httpd -f -p 8080 -h /www")


async def test_pod_is_isolated_limited_and_reachable(runtime: RuncRuntime, pod_cidr: str) -> None:
    p = pod("web", [])
    sb = await runtime.run_pod_sandbox(p)
    assert sb.state is SandboxState.READY and sb.ip is not None and sb.ip in _hosts(pod_cidr)
    c = {"name": "httpd", "image": IMAGE, "command": ["sh", "-c", HTTPD],
         "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}}}
    cid = await run(runtime, p, c, sb.id)
    assert (await runtime.container_status(cid)).state is ContainerState.RUNNING
    pid = runtime.init_pid(cid)
    assert pid is not None

    # Own pid/mount/uts/net namespaces; the net namespace is the sandbox's.
    for ns in ("pid", "mnt", "uts", "net"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
    assert os.readlink(f"/proc/{pid}/ns/net") == f"net:[{netns_path(sb.id).stat().st_ino}]"
    hostname = await runtime.exec(cid, ["hostname"], timeout=10)
    assert (hostname.exit_code, hostname.stdout.strip()) == (0, b"web")
    init = await runtime.exec(cid, ["cat", "/proc/1/comm"], timeout=10)
    assert init.stdout.strip() == b"httpd"  # its own pid 1

    # Reachable on its pod IP over the node bridge.
    body = await _http_get(f"http://{sb.ip}:8080/")
    assert body.strip() == b"hello-from-pod"

    # Limits written into its cgroup.
    cg = json.loads((runtime.paths.container(cid) / "meta.json").read_text())["cgroupsPath"]
    assert cg == f"/kubelite/{runtime.node_name}/{p['metadata']['uid']}/{cid}"
    assert _cgroup_value(runtime, "memory", cg, "memory.limit_in_bytes", "memory.max") == str(64 * 1024 * 1024)
    quota = _cgroup_value(runtime, "cpu", cg, "cpu.cfs_quota_us", "cpu.max")
    assert quota.split()[0] == "25000"
    assert _cgroup_value(runtime, "pids", cg, "pids.max", "pids.max") == "64"

    # Output lands in the log file in CRI format.
    log_text = runtime.log_path(cid).read_text()
    assert " stdout F serving" in log_text

    await runtime.stop_pod_sandbox(sb.id)
    assert (await runtime.container_status(cid)).state is ContainerState.EXITED
    await runtime.remove_pod_sandbox(sb.id)
    assert not netns_path(sb.id).exists()
    assert _ip("link", "show", f"klv{sb.id[:12]}", check=False).returncode != 0
    for mount in runtime.layout.mounts:
        assert not (mount / cgroups.pod_cgroups_path(runtime.node_name, sb.pod_uid).lstrip("/")).exists()
    assert runtime.network.ipam().allocations() == {}
    assert _mounts_under(runtime.paths.root) == []


def _hosts(cidr: str) -> list[str]:
    import ipaddress

    return [str(h) for h in ipaddress.ip_network(cidr).hosts()]


async def _http_get(url: str, timeout: float = 10.0) -> bytes:
    def get() -> bytes:
        with urllib.request.urlopen(url, timeout=2) as r:
            data: bytes = r.read()
            return data

    deadline = time.monotonic() + timeout
    while True:
        try:
            return await asyncio.to_thread(get)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_exit_codes_and_oom_kill_are_reported(runtime: RuncRuntime) -> None:
    p = pod("jobs", [])
    sb = await runtime.run_pod_sandbox(p)
    three = await run(runtime, p, {"name": "three", "image": IMAGE, "command": ["sh", "-c", "exit 3"]}, sb.id)
    hog = {"name": "hog", "image": IMAGE, "command": ["sh", "-c", "x=a; while true; do x=$x$x; done"],
           "resources": {"limits": {"memory": "16Mi"}}}
    oom = await run(runtime, p, hog, sb.id)

    st = await wait_exited(runtime, three)
    assert (st.exit_code, st.reason) == (3, "Error") and st.finished_at and st.started_at
    st = await wait_exited(runtime, oom)
    assert (st.exit_code, st.reason) == (137, "OOMKilled")


async def test_stop_sends_term_then_kill_after_grace(runtime: RuncRuntime) -> None:
    p = pod("stoppers", [])
    sb = await runtime.run_pod_sandbox(p)
    polite = await run(runtime, p, {"name": "polite", "image": IMAGE, "command": [
        "sh", "-c", "trap 'exit 0' TERM; echo up; while true; do sleep 0.1; done"]}, sb.id)
    stubborn = await run(runtime, p, {"name": "stubborn", "image": IMAGE, "command": [
        "sh", "-c", "trap '' TERM; echo up; while true; do sleep 0.1; done"]}, sb.id)
    for cid in (polite, stubborn):  # the traps are set once the shell has printed
        await _wait_log(runtime, cid, " stdout F up")
    # Containers of one pod share its network and IPC namespaces, and nothing else.
    a, b = runtime.init_pid(polite), runtime.init_pid(stubborn)
    for ns in ("net", "ipc"):
        assert os.readlink(f"/proc/{a}/ns/{ns}") == os.readlink(f"/proc/{b}/ns/{ns}") != os.readlink(
            f"/proc/self/ns/{ns}")
    for ns in ("pid", "mnt", "uts"):
        assert os.readlink(f"/proc/{a}/ns/{ns}") != os.readlink(f"/proc/{b}/ns/{ns}")

    await runtime.stop_container(polite, 10)
    st = await runtime.container_status(polite)
    assert (st.state, st.exit_code) == (ContainerState.EXITED, 0)  # it handled SIGTERM

    begun = time.monotonic()
    await runtime.stop_container(stubborn, 1.0)
    st = await runtime.container_status(stubborn)
    assert (st.state, st.exit_code) == (ContainerState.EXITED, 137)  # ignored SIGTERM, got SIGKILL
    assert time.monotonic() - begun >= 1.0  # not before the grace period ended
    await runtime.stop_container(stubborn, 1.0)  # idempotent on an exited container


async def _wait_log(rt: RuncRuntime, cid: str, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in (rt.log_path(cid).read_text() if rt.log_path(cid).exists() else ""):
        assert time.monotonic() < deadline, f"{text!r} never logged by {cid}"
        await asyncio.sleep(0.05)


async def test_create_failure_is_reported_and_leaves_nothing(runtime: RuncRuntime) -> None:
    p = pod("broken", [])
    sb = await runtime.run_pod_sandbox(p)
    with pytest.raises(CreateContainerError, match="nope"):
        await run(runtime, p, {"name": "bad", "image": IMAGE, "command": ["/nope"]}, sb.id)
    with pytest.raises(CreateContainerError, match="not-an-image"):
        await run(runtime, p, {"name": "bad", "image": "not-an-image:1"}, sb.id)
    assert await runtime.list_containers() == []
    assert list((runtime.paths.root / "containers").iterdir()) == []
    assert _mounts_under(runtime.paths.root / "containers") == []  # no rootfs overlay left mounted


# The "agent" of the re-adoption test: creates a pod, prints the ids, then waits to be SIGKILLed.
_AGENT = textwrap.dedent("""
    import asyncio, json, sys
    from pathlib import Path
    from kubelite.agent.runtime import RuntimeOptions
    from kubelite.agent.runtimes.runc import RuncRuntime

    async def main():
        rt = RuncRuntime(RuntimeOptions(node_name=sys.argv[1], data_dir=Path(sys.argv[2]), pod_cidr=sys.argv[3]))
        pod = json.loads(sys.argv[4])
        sb = await rt.run_pod_sandbox(pod)
        ids = {}
        for name, script in (("server", "sleep 1000"), ("later", "read x < /tmp/never || true; sleep 1.5; exit 7")):
            c = {"name": name, "image": sys.argv[5], "command": ["sh", "-c", script]}
            ids[name] = await rt.create_container(sb.id, pod, c, 2, {}, [])
            await rt.start_container(ids[name])
        print(json.dumps({"sandbox": sb.id, **ids}), flush=True)
        await asyncio.sleep(1000)

    asyncio.run(main())
""")


async def test_restarted_runtime_readopts_running_containers(runtime: RuncRuntime, pod_cidr: str) -> None:
    p = pod("adopted", [])
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _AGENT, runtime.node_name, str(runtime.paths.root), pod_cidr, json.dumps(p), IMAGE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert agent.stdout is not None
        ids = json.loads(await asyncio.wait_for(agent.stdout.readline(), 30))
    finally:
        agent.send_signal(signal.SIGKILL)  # the agent dies without any cleanup
        await agent.wait()

    fresh = _new_runtime(runtime.paths.root, runtime.node_name, pod_cidr)
    sandboxes = await fresh.list_pod_sandboxes()
    assert [(s.id, s.pod_uid, s.state) for s in sandboxes] == [(ids["sandbox"], p["metadata"]["uid"],
                                                                  SandboxState.READY)]
    containers = {c.container_name: c for c in await fresh.list_containers()}
    assert sorted(containers) == ["later", "server"]  # no duplicates
    server = containers["server"]
    assert server.id == ids["server"] and server.state is ContainerState.RUNNING
    assert server.labels[LABEL_POD_UID] == p["metadata"]["uid"] and server.labels[LABEL_ATTEMPT] == "2"
    assert server.labels[LABEL_CONTAINER_NAME] == "server" and server.sandbox_id == ids["sandbox"]
    # The container that exits after the agent died still reports its own exit code (the shim lived on).
    st = await wait_exited(fresh, ids["later"])
    assert st.exit_code == 7
    assert (await fresh.exec(ids["server"], ["echo", "still-here"], timeout=10)).stdout == b"still-here\n"
    await fresh.remove_pod_sandbox(ids["sandbox"])
    assert await fresh.list_containers() == [] and await fresh.list_pod_sandboxes() == []
