"""What runs on a machine, seen from the machine itself (not from the API): its containers.

One SSH round trip per look: a small Python program runs on the machine (every kubelite node has
python3). It reads the agent's settings (``/etc/kubelite/agent.env``: runtime, data dir, node name,
``DOCKER_HOST``), asks the runtime the agent uses what it runs (``runc list`` under the agent's
root, or ``docker ps``/``docker inspect`` of the containers labelled with the node), and prints,
for each container, its state, init PID, the pod it belongs to (labels: the agent's ``meta.json``
next to a runc bundle, Docker's own labels), its namespaces and its cgroup memory limit, plus the
namespaces of the machine itself to compare with. The runtime is read per machine, not from
the cluster spec: the checks judge what the machine really runs.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from testinfra.host import Host

__all__ = ["AGENT_ENV", "NAMESPACES", "Container", "Snapshot", "runc", "running_containers", "snapshot"]

AGENT_ENV = "/etc/kubelite/agent.env"  # rendered by deploy/agent.py; the unit's EnvironmentFile
NAMESPACES = ("ipc", "mnt", "net", "pid", "uts")

_PROGRAM = r"""
import json, os, socket, subprocess, sys
env = {}
try:
    for line in open(sys.argv[1]):
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            env[key] = value.strip()
except OSError:
    pass
runtime = env.get("KUBELITE_RUNTIME") or "runc"
data = env.get("KUBELITE_DATA_DIR") or "/var/lib/kubelite/agent"
node = env.get("KUBELITE_NODE_NAME") or socket.gethostname()
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
def entry(cid, status, pid, running, labels, role):
    alive = running and pid > 0 and os.path.exists(f"/proc/{pid}")
    return {"id": cid, "status": status, "pid": pid, "alive": alive, "labels": labels, "role": role,
            "ns": ns(pid) if alive else None, "memory_limit": memory_limit(pid) if alive else None}
# PID 1's namespaces are the machine's; where they cannot be read (PID 1 of another user, as in some CI
# containers) this program's own are: it runs in the machine's namespaces, not a pod's.
out = {"runtime": runtime, "node": node, "host_ns": ns(1) or ns(os.getpid()), "error": "", "containers": []}
def run(argv):
    try:
        proc = subprocess.run(argv, capture_output=True, text=True)
    except OSError as e:
        return None, f"{argv[0]}: {e}"
    return proc.stdout, (f"{' '.join(argv[:3])} ...: {proc.stderr.strip()}" if proc.returncode else "")
if runtime == "docker":
    docker = ["docker"] + (["-H", env["DOCKER_HOST"]] if env.get("DOCKER_HOST") else [])
    ids, out["error"] = run(docker + ["ps", "-aq", "--no-trunc", "--filter", f"label=io.kubelite.node={node}"])
    ids = (ids or "").split()
    if ids and not out["error"]:
        doc, out["error"] = run(docker + ["inspect", *ids])
        for c in json.loads(doc or "null") or []:
            labels, state = c["Config"].get("Labels") or {}, c.get("State") or {}
            out["containers"].append(entry(c["Id"], state.get("Status"), int(state.get("Pid") or 0),
                                           bool(state.get("Running")), labels, labels.get("io.kubelite.role", "container")))
elif runtime == "runc":
    listing, out["error"] = run(["runc", "--root", f"{data}/runc", "list", "-f", "json"])
    for c in json.loads(listing or "null") or []:
        try:
            labels = json.load(open(f"{data}/containers/{c['id']}/meta.json")).get("labels") or {}
        except (OSError, ValueError):
            labels = {}
        out["containers"].append(entry(c["id"], c.get("status"), int(c.get("pid") or 0), c.get("status") == "running",
                                       labels, "container"))
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Container:
    id: str
    status: str
    pid: int
    alive: bool  # the runtime says running and its init process exists
    pod_uid: str
    pod: str  # namespace/name
    container: str  # "" for a Docker pod sandbox
    ns: dict[str, str] | None
    memory_limit: str | None  # the cgroup file's content: bytes, or "max" (v2) / a huge number (v1)
    role: str = "container"  # or "sandbox": the docker runtime's per-pod holder of the network namespace


@dataclass(frozen=True)
class Snapshot:
    machine: str
    runtime: str  # the agent's runtime on this machine: runc | docker | fake
    host_ns: dict[str, str]
    containers: list[Container]


def snapshot(host: Host, machine: str, agent_env: str = AGENT_ENV) -> Snapshot:
    """What the machine runs; ``agent_env`` is where its agent's settings are (tests point it elsewhere)."""
    result = host.run(f"python3 -c {shlex.quote(_PROGRAM)} {shlex.quote(agent_env)}")
    if result.rc != 0:
        raise AssertionError(f"{machine}: cannot list its containers: {result.stderr.strip() or result.stdout.strip()}")
    doc: dict[str, Any] = json.loads(result.stdout)
    if doc["error"]:
        raise AssertionError(f"{machine}: listing its {doc['runtime']} containers failed: {doc['error']}")
    containers = []
    for c in doc["containers"]:
        labels = c["labels"]
        containers.append(Container(
            id=c["id"], status=str(c["status"]), pid=int(c["pid"]), alive=bool(c["alive"]),
            pod_uid=labels.get("io.kubernetes.pod.uid", ""),
            pod=f"{labels.get('io.kubernetes.pod.namespace', '?')}/{labels.get('io.kubernetes.pod.name', '?')}",
            container=labels.get("io.kubernetes.container.name", ""), ns=c["ns"], memory_limit=c["memory_limit"],
            role=str(c["role"]),
        ))  # fmt: skip
    return Snapshot(machine, str(doc["runtime"]), doc["host_ns"], containers)


def running_containers(host: Host, machine: str, agent_env: str = AGENT_ENV) -> list[Container]:
    """The pods' containers alive on the machine (Docker pod sandboxes left out: they run no workload)."""
    return [c for c in snapshot(host, machine, agent_env).containers if c.alive and c.role == "container"]


def runc(host: Host, *args: str) -> tuple[int, str]:
    """``runc`` under the agent's root on the machine: (exit code, output)."""
    data = host.run(f"sed -n 's/^KUBELITE_DATA_DIR=//p' {AGENT_ENV}").stdout.strip() or "/var/lib/kubelite/agent"
    result = host.run(" ".join(["runc", "--root", shlex.quote(f"{data}/runc"), *(shlex.quote(a) for a in args)]))
    return result.rc, (result.stdout + result.stderr).strip()
