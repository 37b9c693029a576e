"""cgroups: host layout detection (v1, hybrid, v2), OCI resources from pod specs, OOM counters, cleanup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubelite.agent.cgroups import (
    CgroupLayout,
    container_cgroups_path,
    detect_layout,
    linux_resources,
    oom_events_file,
    prune_empty_cgroup,
    remove_cgroup_tree,
    resource_values,
)
from kubelite.agent.shim import oom_kill_count

# Real /proc/self/mountinfo excerpts.
HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
"""
UNIFIED = """\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
26 23 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""


def test_hybrid_host_is_v1_with_each_controller_in_its_hierarchy() -> None:
    layout = detect_layout(HYBRID)
    assert layout.version == 1
    assert layout.controller_dir("cpu", "/kubelite/n/u/c") == Path("/sys/fs/cgroup/cpu,cpuacct/kubelite/n/u/c")
    assert layout.controller_dir("cpuacct", "/x") == Path("/sys/fs/cgroup/cpu,cpuacct/x")
    assert layout.controller_dir("memory", "/x") == Path("/sys/fs/cgroup/memory/x")
    assert layout.controller_dir("blkio", "/x") is None  # not mounted here
    # runc creates the path in the named and unified hierarchies too: cleanup must visit them.
    assert Path("/sys/fs/cgroup/systemd") in layout.mounts and Path("/sys/fs/cgroup/unified") in layout.mounts
    assert oom_events_file(layout, "/p") == Path("/sys/fs/cgroup/memory/p/memory.oom_control")


def test_unified_host_is_v2() -> None:
    layout = detect_layout(UNIFIED)
    assert layout.version == 2
    assert layout.mounts == [Path("/sys/fs/cgroup")]
    assert layout.controller_dir("memory", "/kubelite/n") == Path("/sys/fs/cgroup/kubelite/n")
    assert oom_events_file(layout, "/p") == Path("/sys/fs/cgroup/p/memory.events")


def test_this_host_is_detected() -> None:
    layout = detect_layout()
    memory = layout.controller_dir("memory", "/")
    assert memory is not None and memory.is_dir()
    oom_file = oom_events_file(layout, "/")
    if layout.version == 1 or (oom_file is not None and oom_file.exists()):  # v2's root has no memory.events
        assert oom_file is not None and oom_kill_count(oom_file.read_text()) >= 0


def test_no_cgroup_mounted_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        detect_layout("22 1 254:1 / / rw - ext4 /dev/vda1 rw\n")


def test_limits_become_oci_resources() -> None:
    c = {"resources": {"limits": {"memory": "128Mi", "cpu": "1500m"}, "requests": {"cpu": "250m"}}}
    res = _resources(c, pids_limit=100)
    assert res["memory"] == {"limit": 128 * 2**20, "swap": 128 * 2**20}
    assert res["cpu"] == {"shares": 256, "quota": 150_000, "period": 100_000}
    assert res["pids"] == {"limit": 100}
    assert res["devices"] == [{"allow": False, "access": "rwm"}]


def test_cpu_limit_alone_implies_request_and_tiny_values_are_clamped() -> None:
    res = _resources({"resources": {"limits": {"cpu": "1m"}}})
    assert res["cpu"] == {"shares": 2, "quota": 1000, "period": 100_000}
    assert "memory" not in res and "pids" not in res


def test_no_resources_no_limits() -> None:
    assert _resources({}) == {"devices": [{"allow": False, "access": "rwm"}]}
    assert resource_values({"resources": {"limits": {"memory": "1G"}}})["memory_limit_bytes"] == 10**9


def _resources(container: dict[str, Any], pids_limit: int | None = None) -> dict[str, Any]:
    v = resource_values(container)  # memory requests limit nothing: not passed on
    return linux_resources(cpu_request_millis=v["cpu_request_millis"], cpu_limit_millis=v["cpu_limit_millis"],
                           memory_limit_bytes=v["memory_limit_bytes"], pids_limit=pids_limit)


def test_oom_kill_counter_parsing() -> None:
    v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"
    v2 = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n"
    assert oom_kill_count(v1) == 2 and oom_kill_count(v2) == 1
    assert oom_kill_count("oom_kill_disable 0\nunder_oom 0\n") == 0  # kernels before 4.13


def test_cgroup_paths_nest_node_pod_container() -> None:
    assert container_cgroups_path("node-a", "uid-1", "c1") == "/kubelite/node-a/uid-1/c1"


def test_remove_tree_removes_children_first_in_every_hierarchy(tmp_path: Path) -> None:
    mem, pids = tmp_path / "memory", tmp_path / "pids"
    layout = CgroupLayout(1, {"memory": mem, "pids": pids})
    for h in (mem, pids):
        (h / "kubelite/n/uid/c1").mkdir(parents=True)
        (h / "kubelite/n/uid/c2").mkdir(parents=True)
    (mem / "kubelite/other/uid2").mkdir(parents=True)
    assert remove_cgroup_tree(layout, "/kubelite/n/uid") == []
    prune_empty_cgroup(layout, "/kubelite/n")
    prune_empty_cgroup(layout, "/kubelite")  # another node still uses it in memory: kept there
    assert not (mem / "kubelite/n").exists() and not (pids / "kubelite").exists()
    assert (mem / "kubelite/other/uid2").is_dir()
    assert remove_cgroup_tree(layout, "/kubelite/missing") == []


def test_remove_tree_reports_what_it_cannot_remove(tmp_path: Path) -> None:
    # A regular file stands in for a cgroup's process list: rmdir fails as on a busy cgroup.
    mem = tmp_path / "memory"
    (mem / "kubelite/n/uid/c1").mkdir(parents=True)
    (mem / "kubelite/n/uid/c1/tasks").write_text("123\n")
    left = remove_cgroup_tree(CgroupLayout(1, {"memory": mem}), "/kubelite/n/uid")
    assert left == [mem / "kubelite/n/uid/c1", mem / "kubelite/n/uid"]
