"""One runtime conformance suite, run against the real runc and a real dockerd (needs root).

Every test gets its own node name (so its own bridge, state and cgroup subtree) and a guarded pod
CIDR; after each test ``reset()`` must leave nothing of the node on the host, checked from outside
the runtime (kernel links, mounts, cgroups; runc's state dirs; dockerd's container list via the
docker CLI).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from kubelite.agent import cgroups
from kubelite.agent.images import ImageStore
from kubelite.agent.netns import bridge_name, netns_path
from kubelite.agent.runtime import (
    LABEL_ATTEMPT,
    LABEL_CONTAINER_NAME,
    LABEL_POD_UID,
    ContainerState,
    CreateContainerError,
    Mount,
    Runtime,
    RuntimeFailure,
    SandboxState,
)
from kubelite.images.build import build_busybox
from tests.dockerd import dockerd  # noqa: F401 - the session fixture the docker harness uses
from tests.integration.runtime_suite import (
    Harness,
    cgroup_of,
    cgroup_value,
    config,
    guarded_pod_cidr,
    hosts,
    http_get,
    ip,
    pod,
    require_host,
    run,
    wait_exited,
    wait_log,
)

IMAGE = "busybox:conformance"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def image_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tar = tmp_path_factory.mktemp("image") / "busybox.tar"
    build_busybox(IMAGE).write(tar)
    return tar


@pytest.fixture(scope="module", params=["runc", "docker"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    require_host(request.param)
    yield Harness(request.param, request.getfixturevalue("dockerd") if request.param == "docker" else None)


@dataclass
class Node:
    rt: Runtime
    harness: Harness
    data_dir: Path
    name: str
    cidr: str

    def fresh(self) -> Runtime:
        """A second runtime instance over the same node state (what a restarted agent builds)."""
        return self.harness.make(self.data_dir, self.name, self.cidr)


@pytest.fixture
async def node(harness: Harness, tmp_path: Path, image_tar: Path) -> AsyncIterator[Node]:
    with guarded_pod_cidr() as cidr:
        name = f"rt-{uuid.uuid4().hex[:8]}"
        data_dir = tmp_path / "node"
        rt = harness.make(data_dir, name, cidr)
        ImageStore(data_dir / "images").import_archive(image_tar)
        try:
            yield Node(rt, harness, data_dir, name, cidr)
        finally:
            await rt.reset()  # type: ignore[attr-defined]
            await rt.close()
            assert harness.leftovers(rt, data_dir, name, cidr) == []


HTTPD = "echo serving; mkdir -p /www && echo hello-from-pod > /www/index.html && exec httpd -f -p 8080 -h /www"


async def test_pod_is_isolated_limited_and_reachable(node: Node, tmp_path: Path) -> None:
    rt = node.rt
    assert rt.version.startswith(f"{node.harness.name}://") and await rt.healthy()
    p = pod("web")
    sb = await rt.run_pod_sandbox(p)
    assert sb.state is SandboxState.READY and sb.ip in hosts(node.cidr) and sb.pod_uid == p["metadata"]["uid"]
    c = {"name": "httpd", "image": IMAGE, "command": ["sh", "-c", HTTPD],
         "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}}}
    log = tmp_path / "logs" / "httpd" / "0.log"
    cid = await run(rt, p, c, sb.id, config(c, log))
    assert (await rt.container_status(cid)).state is ContainerState.RUNNING
    pid = await node.harness.pid(rt, cid)

    # Own pid/mount/uts/net namespaces; the net namespace is the sandbox's, on the node bridge.
    for ns in ("pid", "mnt", "uts", "net"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
    assert os.readlink(f"/proc/{pid}/ns/net") == f"net:[{netns_path(sb.id).stat().st_ino}]"
    assert ip("link", "show", "master", bridge_name(node.name)).stdout.count("klv") == 1
    hostname = await rt.exec(cid, ["hostname"], timeout=10)
    assert (hostname.exit_code, hostname.stdout.strip()) == (0, b"web")
    assert (await rt.exec(cid, ["cat", "/proc/1/comm"], timeout=10)).stdout.strip() == b"httpd"  # its own pid 1
    etc_hosts = (await rt.exec(cid, ["cat", "/etc/hosts"], timeout=10)).stdout.decode()
    assert f"{sb.ip}\tweb" in etc_hosts

    assert (await http_get(f"http://{sb.ip}:8080/")).strip() == b"hello-from-pod"

    # Limits in the container's cgroup, nested under the node and the pod.
    cg = cgroup_of(pid)
    assert cg.startswith(f"/kubelite/{node.name}/{p['metadata']['uid']}/"), cg
    assert cgroup_value(cg, "memory", "memory.limit_in_bytes", "memory.max") == str(64 * 1024 * 1024)
    assert cgroup_value(cgroup_of(pid, "cpu"), "cpu", "cpu.cfs_quota_us", "cpu.max").split()[0] == "25000"
    assert cgroup_value(cgroup_of(pid, "pids"), "pids", "pids.max", "pids.max").isdigit()  # a pids limit is set

    assert " stdout F serving" in await wait_log(log, "serving")

    await rt.stop_pod_sandbox(sb.id)
    assert (await rt.container_status(cid)).state is ContainerState.EXITED
    assert [s.state for s in await rt.list_pod_sandboxes()] == [SandboxState.NOT_READY]
    await rt.remove_pod_sandbox(sb.id)
    assert not netns_path(sb.id).exists()
    assert await rt.list_pod_sandboxes() == [] and await rt.list_containers() == []
    assert ip("link", "show", "master", bridge_name(node.name)).stdout.count("klv") == 0  # the veth is gone
    assert not [m for m in cgroups.detect_layout().mounts if (m / "kubelite" / node.name / sb.pod_uid).exists()]
    assert not [f for f in (node.data_dir / "net" / "ipam").rglob("*") if f.is_file()]  # the IP is released


async def test_exit_codes_and_oom_kill_are_reported(node: Node) -> None:
    rt = node.rt
    p = pod("jobs")
    sb = await rt.run_pod_sandbox(p)
    three = {"name": "three", "image": IMAGE, "command": ["sh", "-c", "exit 3"]}
    ok = {"name": "ok", "image": IMAGE, "command": ["true"]}
    hog = {"name": "hog", "image": IMAGE, "command": ["sh", "-c", "x=a; while true; do x=$x$x; done"],
           "resources": {"limits": {"memory": "16Mi"}}}
    ids = {c["name"]: await run(rt, p, c, sb.id, config(c)) for c in (three, ok, hog)}

    st = await wait_exited(rt, ids["three"])
    assert (st.exit_code, st.reason) == (3, "Error") and st.started_at and st.finished_at
    st = await wait_exited(rt, ids["ok"])
    assert (st.exit_code, st.reason) == (0, "Completed")
    st = await wait_exited(rt, ids["hog"])
    assert (st.exit_code, st.reason) == (137, "OOMKilled")
    listed = {c.container_name: c for c in await rt.list_containers()}
    assert {n: c.state for n, c in listed.items()} == {n: ContainerState.EXITED for n in ids}
    assert all(c.sandbox_id == sb.id and c.pod_uid == p["metadata"]["uid"] for c in listed.values())


async def test_stop_sends_term_then_kill_after_grace(node: Node, tmp_path: Path) -> None:
    rt = node.rt
    p = pod("stoppers")
    sb = await rt.run_pod_sandbox(p)
    ids = {}
    for name, trap in (("polite", "exit 0"), ("stubborn", "")):
        c = {"name": name, "image": IMAGE,
             "command": ["sh", "-c", f"trap '{trap}' TERM; echo up; while true; do sleep 0.1; done"]}
        ids[name] = await run(rt, p, c, sb.id, config(c, tmp_path / f"{name}.log"))
        await wait_log(tmp_path / f"{name}.log", " stdout F up")  # the trap is set once it printed
    # Containers of one pod share its network and IPC namespaces, and nothing else.
    a, b = await node.harness.pid(rt, ids["polite"]), await node.harness.pid(rt, ids["stubborn"])
    for ns in ("net", "ipc"):
        assert os.readlink(f"/proc/{a}/ns/{ns}") == os.readlink(f"/proc/{b}/ns/{ns}") != os.readlink(
            f"/proc/self/ns/{ns}")
    for ns in ("pid", "mnt", "uts"):
        assert os.readlink(f"/proc/{a}/ns/{ns}") != os.readlink(f"/proc/{b}/ns/{ns}")

    await rt.stop_container(ids["polite"], 10)
    st = await rt.container_status(ids["polite"])
    assert (st.state, st.exit_code) == (ContainerState.EXITED, 0)  # it handled SIGTERM

    begun = time.monotonic()
    await rt.stop_container(ids["stubborn"], 1.0)
    st = await rt.container_status(ids["stubborn"])
    assert (st.state, st.exit_code) == (ContainerState.EXITED, 137)  # ignored SIGTERM, got SIGKILL
    assert time.monotonic() - begun >= 1.0  # not before the grace period ended
    await rt.stop_container(ids["stubborn"], 1.0)  # idempotent on an exited container


async def test_exec_env_mounts_and_working_dir(node: Node, tmp_path: Path) -> None:
    rt = node.rt
    p = pod("execs")
    sb = await rt.run_pod_sandbox(p)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "greeting").write_text("hi from the host\n")
    c = {"name": "app", "image": IMAGE, "command": ["sleep", "1000"], "workingDir": "/data"}
    cfg = replace(config(c, env={"FOO": "bar baz"}), mounts=[Mount("/data", str(shared), read_only=True)])
    cid = await run(rt, p, c, sb.id, cfg)

    res = await rt.exec(cid, ["sh", "-c", 'pwd; echo "$FOO"; cat greeting; echo oops >&2; exit 4'], timeout=10)
    assert (res.exit_code, res.stdout, res.stderr) == (4, b"/data\nbar baz\nhi from the host\n", b"oops\n")
    denied = await rt.exec(cid, ["touch", "/data/new"], timeout=10)
    assert denied.exit_code != 0 and not (shared / "new").exists()  # mounted read-only

    begun = time.monotonic()
    with pytest.raises(TimeoutError):
        await rt.exec(cid, ["sh", "-c", "echo $$ > /tmp/exec.pid; sleep 60"], timeout=0.5)
    assert time.monotonic() - begun < 10
    ps = await rt.exec(cid, ["ps", "-o", "args"], timeout=10)
    assert b"sleep 60" not in ps.stdout  # the timed-out process was killed


async def test_create_failures_are_reported_and_cleanable(node: Node) -> None:
    rt = node.rt
    p = pod("broken")
    sb = await rt.run_pod_sandbox(p)
    missing = {"name": "bad", "image": "not-an-image:1"}
    with pytest.raises(CreateContainerError, match="not-an-image"):
        await rt.create_container(sb.id, p, missing, 0, {}, [], config=config(missing))
    assert await rt.list_containers() == []

    # A command that is not in the image fails at create (runc) or start (docker): either way it
    # is reported, never shown as running.
    nope = {"name": "nope", "image": IMAGE, "command": ["/nope"]}
    with pytest.raises(RuntimeFailure, match="nope"):
        await run(rt, p, nope, sb.id, config(nope))
    for c in await rt.list_containers():
        st = await rt.container_status(c.id)
        assert st.state is ContainerState.EXITED and st.exit_code != 0 and "nope" in st.message
        await rt.remove_container(c.id)
    assert await rt.list_containers() == []
    with pytest.raises(RuntimeFailure):
        await rt.create_container("0" * 64, p, nope, 0, {}, [], config=config(nope))  # no such sandbox


# The "agent" of the re-adoption test: creates a pod, prints the ids, then waits to be SIGKILLed.
_AGENT = textwrap.dedent("""
    import asyncio, json, sys
    from dataclasses import replace
    from pathlib import Path
    from kubelite.agent.runtime import RuntimeOptions
    from kubelite.agent.runtimes import create_runtime
    from kubelite.agent.runtimes.common import config_from_spec

    async def main():
        name, data_dir, cidr, pod, image = sys.argv[1], Path(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4]), sys.argv[5]
        rt = create_runtime(sys.argv[6], RuntimeOptions(node_name=name, data_dir=data_dir, pod_cidr=cidr))
        sb = await rt.run_pod_sandbox(pod)
        ids = {}
        for c, script in (("server", "sleep 1000"), ("later", "echo before; sleep 2; echo after; exit 7")):
            spec = {"name": c, "image": image, "command": ["sh", "-c", script]}
            cfg = replace(config_from_spec(spec, {}, []), log_path=data_dir / f"{c}.log")
            ids[c] = await rt.create_container(sb.id, pod, spec, 2, {}, [], config=cfg)
            await rt.start_container(ids[c])
        print(json.dumps({"sandbox": sb.id, **ids}), flush=True)
        await asyncio.sleep(1000)

    asyncio.run(main())
""")


async def test_fresh_runtime_readopts_after_sigkill(node: Node) -> None:
    p = pod("adopted")
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _AGENT, node.name, str(node.data_dir), node.cidr, json.dumps(p), IMAGE,
        node.harness.name, stdout=asyncio.subprocess.PIPE, env={**os.environ, **node.harness.env},
    )
    try:
        assert agent.stdout is not None
        ids = json.loads(await asyncio.wait_for(agent.stdout.readline(), 60))
    finally:
        agent.send_signal(signal.SIGKILL)  # the owner dies without any cleanup
        await agent.wait()

    fresh = node.fresh()
    try:
        sandboxes = await fresh.list_pod_sandboxes()
        assert [(s.id, s.pod_uid, s.state) for s in sandboxes] == [
            (ids["sandbox"], p["metadata"]["uid"], SandboxState.READY)]
        assert sandboxes[0].ip in hosts(node.cidr)
        containers = {c.container_name: c for c in await fresh.list_containers()}
        assert sorted(containers) == ["later", "server"]  # no duplicates
        server = containers["server"]
        assert server.id == ids["server"] and server.state is ContainerState.RUNNING
        assert server.labels[LABEL_POD_UID] == p["metadata"]["uid"] and server.labels[LABEL_ATTEMPT] == "2"
        assert server.labels[LABEL_CONTAINER_NAME] == "server" and server.sandbox_id == ids["sandbox"]
        # The container that exits after its owner died still reports its exit code, and its
        # whole output reaches its log file exactly once.
        st = await wait_exited(fresh, ids["later"])
        assert st.exit_code == 7
        await fresh.list_containers()  # the relist a restarted agent runs
        log = await wait_log(node.data_dir / "later.log", "stdout F after")
        assert [line.split(" ", 3)[3] for line in log.splitlines()] == ["before", "after"]
        assert (await fresh.exec(ids["server"], ["echo", "still-here"], timeout=10)).stdout == b"still-here\n"
        await fresh.stop_pod_sandbox(ids["sandbox"])
        await fresh.remove_pod_sandbox(ids["sandbox"])
        assert await fresh.list_containers() == [] and await fresh.list_pod_sandboxes() == []
    finally:
        await fresh.close()


async def test_two_nodes_on_one_host_do_not_see_each_other(node: Node, tmp_path: Path, image_tar: Path) -> None:
    with guarded_pod_cidr() as other_cidr:
        other_name = f"rt-{uuid.uuid4().hex[:8]}"
        other = node.harness.make(tmp_path / "other", other_name, other_cidr)
        ImageStore(tmp_path / "other" / "images").import_archive(image_tar)
        try:
            p1, p2 = pod("one"), pod("two")
            sb1 = await node.rt.run_pod_sandbox(p1)
            sb2 = await other.run_pod_sandbox(p2)
            c = {"name": "c", "image": IMAGE, "command": ["sleep", "1000"]}
            c1 = await run(node.rt, p1, c, sb1.id, config(c))
            c2 = await run(other, p2, c, sb2.id, config(c))
            assert [s.id for s in await node.rt.list_pod_sandboxes()] == [sb1.id]
            assert [s.id for s in await other.list_pod_sandboxes()] == [sb2.id]
            assert [x.id for x in await node.rt.list_containers()] == [c1]
            assert [x.id for x in await other.list_containers()] == [c2]
        finally:
            await other.reset()  # type: ignore[attr-defined]
            await other.close()
        assert node.harness.leftovers(other, tmp_path / "other", other_name, other_cidr) == []
        assert [x.id for x in await node.rt.list_containers()] == [c1]  # untouched by the other's reset
        assert (await node.rt.container_status(c1)).state is ContainerState.RUNNING
