"""What runs on a machine, seen from the machine itself (not from the API): its runc containers.

One SSH round trip per look: a small Python program runs on the machine (every kubelite node has
python3) and prints, for each container under the agent's runc root, its state, init PID, the pod it
belongs to (the labels the agent wrote next to its bundle), its namespaces and its cgroup memory
limit, plus the namespaces of the machine's own PID 1 to compare with.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from testinfra.host import Host

__all__ = ["NAMESPACES", "Container", "Snapshot", "runc", "running_containers", "snapshot"]

NAMESPACES = ("ipc", "mnt", "net", "pid", "uts")

_PROGRAM = r"""
import json, os, subprocess
data = "/var/lib/kubelite/agent"
try:
    for line in open("/etc/kubelite/agent.env"):
        if line.startswith("KUBELITE_DATA_DIR="):
            data = line.split("=", 1)[1].strip()
except OSError:
    pass
NS = ("ipc", "mnt", "net", "pid", "uts")
def ns(pid):
    try:
        return {n: os.readlink(f"/proc/{pid}/ns/{n}") for n in NS}
    except OSError:
        return None
def memory_limit(pid):
    try:
        lines = open(f"/proc/{pid}/cgroup").read().splitlines()
    except OSError:
        return None
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if not v2 and "memory" in controllers.split(","):
            f = f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"
        elif v2 and controllers == "":
            f = f"/sys/fs/cgroup{path}/memory.max"
        else:
            continue
        try:
            return open(f).read().strip()
        except OSError:
            return None
    return None
proc = subprocess.run(["runc", "--root", f"{data}/runc", "list", "-f", "json"], capture_output=True, text=True)
out = {"host_ns": ns(1), "runc_error": proc.stderr.strip() if proc.returncode else "", "containers": []}
for c in json.loads(proc.stdout or "null") or []:
    try:
        labels = json.load(open(f"{data}/containers/{c['id']}/meta.json")).get("labels") or {}
    except (OSError, ValueError):
        labels = {}
    pid = c.get("pid") or 0
    alive = c.get("status") == "running" and pid > 0 and os.path.exists(f"/proc/{pid}")
    out["containers"].append({
        "id": c["id"], "status": c.get("status"), "pid": pid, "alive": alive, "labels": labels,
        "ns": ns(pid) if alive else None, "memory_limit": memory_limit(pid) if alive else None,
    })
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Container:
    id: str
    status: str
    pid: int
    alive: bool  # runc says running and its init process exists
    pod_uid: str
    pod: str  # namespace/name
    container: str
    ns: dict[str, str] | None
    memory_limit: str | None  # the cgroup file's content: bytes, or "max" (v2) / a huge number (v1)


@dataclass(frozen=True)
class Snapshot:
    machine: str
    host_ns: dict[str, str]
    containers: list[Container]


def snapshot(host: Host, machine: str) -> Snapshot:
    result = host.run("python3 -c " + shlex.quote(_PROGRAM))
    if result.rc != 0:
        raise AssertionError(f"{machine}: cannot list its containers: {result.stderr.strip() or result.stdout.strip()}")
    doc: dict[str, Any] = json.loads(result.stdout)
    if doc["runc_error"]:
        raise AssertionError(f"{machine}: runc list failed: {doc['runc_error']}")
    containers = []
    for c in doc["containers"]:
        labels = c["labels"]
        containers.append(Container(
            id=c["id"], status=str(c["status"]), pid=int(c["pid"]), alive=bool(c["alive"]),
            pod_uid=labels.get("io.kubernetes.pod.uid", ""),
            pod=f"{labels.get('io.kubernetes.pod.namespace', '?')}/{labels.get('io.kubernetes.pod.name', '?')}",
            container=labels.get("io.kubernetes.container.name", ""), ns=c["ns"], memory_limit=c["memory_limit"],
        ))  # fmt: skip
    return Snapshot(machine, doc["host_ns"], containers)


def running_containers(host: Host, machine: str) -> list[Container]:
    return [c for c in snapshot(host, machine).containers if c.alive]


def runc(host: Host, *args: str) -> tuple[int, str]:
    """``runc`` under the agent's root on the machine: (exit code, output)."""
    data = host.run("sed -n 's/^KUBELITE_DATA_DIR=//p' /etc/kubelite/agent.env").stdout.strip() or "/var/lib/kubelite/agent"
    result = host.run(" ".join(["runc", "--root", shlex.quote(f"{data}/runc"), *(shlex.quote(a) for a in args)]))
    return result.rc, (result.stdout + result.stderr).strip()
