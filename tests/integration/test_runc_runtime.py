"""What only the runc runtime does, against the real runc and kernel (needs root).

The behaviour every runtime shares (isolation, limits, reachability, exit codes, stop, exec,
failures, re-adoption, reset) is checked for runc and docker alike by the conformance suite
(``test_runtime_conformance.py``); this file keeps the runc-specific parts: the OCI spec it writes,
the version it reads from the binary, and a failed create leaving no bundle behind.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubelite.agent.images import ImageStore
from kubelite.agent.runtime import ContainerConfig, CreateContainerError, RuntimeOptions
from kubelite.agent.runtimes.common import config_from_spec, resolve_args
from kubelite.agent.runtimes.runc import RuncRuntime, oci_spec
from kubelite.images.build import build_busybox
from tests.integration.runtime_suite import Harness, config, guarded_pod_cidr, pod, require_host, run

IMAGE = "busybox:runc-test"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def image_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_host("runc")
    tar = tmp_path_factory.mktemp("image") / "busybox.tar"
    build_busybox(IMAGE).write(tar)
    return tar


@pytest.fixture
async def runtime(tmp_path: Path, image_tar: Path) -> AsyncIterator[RuncRuntime]:
    with guarded_pod_cidr() as cidr:
        node = f"rt-{uuid.uuid4().hex[:8]}"
        rt = RuncRuntime(RuntimeOptions(node_name=node, data_dir=tmp_path / "node", pod_cidr=cidr))
        ImageStore(rt.paths.root / "images").import_archive(image_tar)
        try:
            yield rt
        finally:
            await rt.reset()
            assert Harness("runc").leftovers(rt, rt.paths.root, node, cidr) == []


def _mounts_under(path: Path) -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(str(path))]


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
        pod=pod("p"), container=c, config=config_from_spec(c, {"A": "1"}, []),
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


# --- real runc ------------------------------------------------------------------------------------


def test_version_is_read_from_the_runc_binary(tmp_path: Path) -> None:
    require_host("runc")
    first = subprocess.run(["runc", "--version"], capture_output=True, text=True, check=True).stdout.split("\n")[0]
    rt = RuncRuntime(RuntimeOptions(node_name=f"rt-{uuid.uuid4().hex[:8]}", data_dir=tmp_path))
    assert rt.version == f"runc://{first.rsplit(' ', 1)[-1]}" and rt.version.startswith("runc://1.")


async def test_failed_create_leaves_no_bundle_or_mount(runtime: RuncRuntime) -> None:
    # runc fails a missing command at create (docker only at start): the bundle, its rootfs overlay
    # and its state must go with it, so nothing is listed and nothing is left mounted.
    p = pod("broken")
    sb = await runtime.run_pod_sandbox(p)
    nope = {"name": "bad", "image": IMAGE, "command": ["/nope"]}
    with pytest.raises(CreateContainerError, match="nope"):
        await run(runtime, p, nope, sb.id, config(nope))
    assert await runtime.list_containers() == []
    assert list((runtime.paths.root / "containers").iterdir()) == []
    assert _mounts_under(runtime.paths.root / "containers") == []
