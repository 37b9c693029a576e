"""Container cgroups for the runc runtime: where they live, what limits they get, what happened in them.

The host may run cgroup v1 (one hierarchy per controller, e.g. ``/sys/fs/cgroup/memory``) or v2 (one
unified hierarchy); :func:`detect_version` decides at run time from the mount table. runc does the
writing: we only hand it ``linux.resources`` (built by :func:`linux_resources`) and a
``linux.cgroupsPath`` that nests every container under its node and pod
(``/kubelite/<node>/<pod-uid>/<container-id>``), so several agents on one machine never share a
cgroup and a pod's cgroups can be removed as one subtree. After a container exits its cgroup still
exists until ``runc delete``: the shim reads the OOM-kill counter from it then (:func:`oom_events_file`).
"""

from __future__ import annotations

import contextlib
import os
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

from kubelite.api.quantity import parse_quantity

__all__ = [
    "CPU_PERIOD_US",
    "CgroupLayout",
    "container_cgroups_path",
    "detect_layout",
    "linux_resources",
    "oom_events_file",
    "pod_cgroups_path",
    "prune_empty_cgroup",
    "remove_cgroup_tree",
    "resource_values",
]

Obj = dict[str, Any]

CPU_PERIOD_US = 100_000  # kubelet's CFS period
_MIN_SHARES = 2  # the kernel's minimum cpu.shares


class CgroupLayout:
    """Where the cgroup hierarchies of this host are mounted."""

    def __init__(self, version: int, controllers: dict[str, Path], named: list[Path] | None = None) -> None:
        self.version = version
        #: controller name -> mount point of its hierarchy (v2: every controller -> the unified mount).
        self.controllers = controllers
        #: v1 hierarchies without controllers (name=systemd): runc creates the path there too.
        self.named = named or []

    @property
    def mounts(self) -> list[Path]:
        """Every hierarchy a container's cgroup path is created in."""
        return sorted(set(self.controllers.values()) | set(self.named))

    def controller_dir(self, controller: str, path: str) -> Path | None:
        """The directory of cgroup ``path`` in the hierarchy that holds ``controller``."""
        mount = self.controllers.get(controller)
        return mount / path.lstrip("/") if mount is not None else None

    def __repr__(self) -> str:
        return f"CgroupLayout(version={self.version}, mounts={[str(m) for m in self.mounts]})"


def detect_layout(mountinfo: str | None = None) -> CgroupLayout:
    """v1 when any v1 controller hierarchy is mounted (also "hybrid" hosts), else v2.

    ``mountinfo`` is the text of ``/proc/self/mountinfo`` (read when not given).
    """
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    v1: dict[str, Path] = {}
    named: list[Path] = []
    v2: list[Path] = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fstype, _source, super_opts = [*right.split(), "", ""][:3]
        mount_point = Path(_unescape(left.split()[4]))
        if fstype == "cgroup":
            # Super options name the controllers; named hierarchies (name=systemd) hold no limits.
            opts = super_opts.split(",")
            for opt in opts:
                if opt in _V1_CONTROLLERS:
                    v1.setdefault(opt, mount_point)
            if not _V1_CONTROLLERS.intersection(opts):
                named.append(mount_point)
        elif fstype == "cgroup2":
            v2.append(mount_point)
    if v1:
        # Hybrid hosts: runc creates the path in the (controller-less) unified hierarchy too.
        return CgroupLayout(1, v1, named + v2)
    if v2:
        unified = min(v2, key=lambda p: len(p.parts))
        return CgroupLayout(2, {c: unified for c in _V2_CONTROLLERS})
    raise RuntimeError("no cgroup hierarchy is mounted")


_V1_CONTROLLERS = frozenset(
    "blkio cpu cpuacct cpuset devices freezer hugetlb memory net_cls net_prio perf_event pids rdma misc".split()
)
_V2_CONTROLLERS = ("cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma", "misc")


def _unescape(path: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    for code, ch in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        path = path.replace(code, ch)
    return path


def pod_cgroups_path(node_name: str, pod_uid: str) -> str:
    return f"/kubelite/{node_name}/{pod_uid}"


def container_cgroups_path(node_name: str, pod_uid: str, container_id: str) -> str:
    # The container id, not its name: two attempts of one container may briefly coexist.
    return f"{pod_cgroups_path(node_name, pod_uid)}/{container_id}"


def linux_resources(
    *,
    cpu_request_millis: int | None = None,
    cpu_limit_millis: int | None = None,
    memory_limit_bytes: int | None = None,
    pids_limit: int | None = None,
    devices_allowed: bool = False,
) -> Obj:
    """OCI ``linux.resources`` for one container (kubelet's mapping).

    memory limit -> memory.limit (and swap = limit: no swap on top); cpu limit -> CFS quota per
    100 ms period; cpu request -> shares (runc converts shares to cpu.weight on v2); plus the
    node's per-container pids limit. Devices: deny all, runc then allows its default set.
    """
    out: Obj = {"devices": [{"allow": devices_allowed, "access": "rwm"}]}
    if memory_limit_bytes is not None:
        out["memory"] = {"limit": memory_limit_bytes, "swap": memory_limit_bytes}
    cpu: Obj = {}
    if cpu_request_millis is None:
        cpu_request_millis = cpu_limit_millis  # a limit alone implies an equal request
    if cpu_request_millis is not None:
        cpu["shares"] = max(_MIN_SHARES, cpu_request_millis * 1024 // 1000)
    if cpu_limit_millis is not None:
        cpu["quota"] = max(1000, cpu_limit_millis * CPU_PERIOD_US // 1000)  # the kernel's minimum is 1 ms
        cpu["period"] = CPU_PERIOD_US
    if cpu:
        out["cpu"] = cpu
    if pids_limit is not None and pids_limit > 0:
        out["pids"] = {"limit": pids_limit}
    return out


def resource_values(container: Obj) -> dict[str, int | None]:
    """cpu millicores and memory bytes of a pod spec container's ``resources`` (None: not set)."""
    res = container.get("resources") or {}
    limits, requests = res.get("limits") or {}, res.get("requests") or {}

    def millis(v: Any) -> int | None:
        return None if v is None else int((parse_quantity(v) * Decimal(1000)).to_integral_value(ROUND_CEILING))

    def nbytes(v: Any) -> int | None:
        return None if v is None else int(parse_quantity(v).to_integral_value(ROUND_CEILING))

    return {
        "cpu_request_millis": millis(requests.get("cpu")),
        "cpu_limit_millis": millis(limits.get("cpu")),
        "memory_request_bytes": nbytes(requests.get("memory")),
        "memory_limit_bytes": nbytes(limits.get("memory")),
    }


def oom_events_file(layout: CgroupLayout, cgroups_path: str) -> Path | None:
    """The file whose ``oom_kill`` counter tells whether the kernel OOM-killed in the cgroup."""
    d = layout.controller_dir("memory", cgroups_path)
    if d is None:
        return None
    return d / ("memory.oom_control" if layout.version == 1 else "memory.events")


def remove_cgroup_tree(layout: CgroupLayout, path: str) -> list[Path]:
    """rmdir cgroup ``path`` and everything below it, in every hierarchy.

    Returns the directories that could not be removed (a process still lives in them)."""
    left: list[Path] = []
    for mount in layout.mounts:
        root = mount / path.strip("/")
        if not root.is_dir():
            continue
        # Deepest first: a cgroup with children cannot be removed.
        for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            _rmdir(d, left)
        _rmdir(root, left)
    return left


def prune_empty_cgroup(layout: CgroupLayout, path: str) -> None:
    """rmdir cgroup ``path`` in every hierarchy where it has no children and no processes left."""
    for mount in layout.mounts:
        with contextlib.suppress(OSError):
            os.rmdir(mount / path.strip("/"))


def _rmdir(d: Path, left: list[Path]) -> None:
    try:
        os.rmdir(d)
    except FileNotFoundError:
        pass
    except OSError:
        left.append(d)
