"""Pod startup on a real node: `kubelite server` + `kubelite agent --runtime runc|docker`, image present.

* Pod create -> Running as seen through a watch, p50/p99 over N pods created one after another
  (each waits for the previous to run: latency, not throughput). Target p99 <= 1 s (Kubernetes'
  SLO is 5 s).
* In the same run, on the same image: raw ``runc run -d`` of a prepared bundle (the floor: no API,
  no sandbox network, no image check) and ``docker run -d`` (a peer) against the same dockerd.
* Agent RSS idle (registered, no pods) and with 30 pods running (target <= 60 MB idle; the k3s
  agent is ~275 MB). For runc the per-container shims are separate processes: their total is
  recorded too, so nothing is hidden.

    python bench/pod_startup_bench.py [--quick] [--pods 100] [--runtimes runc,docker]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import Server, record, rss_mb, start_server, summary
from kubelite.agent import cgroups
from kubelite.agent.images import ImageStore
from kubelite.agent.runtime import Runtime, RuntimeOptions
from kubelite.agent.runtimes import create_runtime
from kubelite.client import ApiClient
from kubelite.controllers.base import PODS
from tests.dockerd import Dockerd, running_dockerd
from tests.integration.runtime_suite import guarded_pod_cidr

# What an idle agent's RSS is made of (imports measured one by one, /proc/self/smaps, tracemalloc).
AGENT_RSS_BOUND = (
    "RSS per import: Python with asyncio and ssl (libssl/libcrypto) ~9 MB and aiohttp client + server ~16 MB before"
    " any agent code, cryptography ~8 MB (node certificates), pydantic ~7 MB (typer validates options with it),"
    " the agent's own modules 5-6 MB"
)
BENCH = "pod_startup"
IMAGE = "busybox:latest"
RSS_PODS = 30
Obj = dict[str, Any]


def kubelite(*args: str) -> None:
    r = subprocess.run([sys.executable, "-m", "kubelite", *args], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"kubelite {' '.join(args)}: {r.stderr}")


def pod(node: str, name: str) -> Obj:
    return {"metadata": {"name": name, "namespace": "default"}, "spec": {
        "nodeName": node, "terminationGracePeriodSeconds": 0,
        "containers": [{"name": "c", "image": IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "100000"]}],
    }}


class Node:
    """One agent process on its own data dir and pod CIDR."""

    def __init__(self, runtime: str, server: Server, cidr: str, tmp: Path, env: dict[str, str]) -> None:
        self.runtime, self.server, self.cidr, self.tmp, self.env = runtime, server, cidr, tmp, env
        self.name = f"bench-{runtime}-{uuid.uuid4().hex[:6]}"
        self.data_dir = tmp / "agent"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, image_tar: Path) -> None:
        kubelite("image", "import", str(image_tar), "--data-dir", str(self.data_dir))
        with open(self.tmp / "agent.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kubelite", "agent", "--server", self.server.url, "--node-name", self.name,
                 "--runtime", self.runtime, "--data-dir", str(self.data_dir), "--pod-cidr", self.cidr,
                 "--cluster-cidr", self.cidr, "--agent-port", "0", "--no-proxy", "--no-dns", "--log-level", "warning"],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited: {(self.tmp / 'agent.log').read_text()[-2000:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(
                f"{self.server.url}/api/v1/nodes/{self.name}", timeout=2
            ) as r:
                conds = json.loads(r.read()).get("status", {}).get("conditions") or []
                if any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                    return
            time.sleep(0.1)
        raise RuntimeError("agent never became Ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def shims_pss_mb(self) -> float:
        """Proportional set size of the runc shims: shared interpreter pages counted once overall."""
        total = 0.0
        for f in (self.data_dir / "containers").glob("*/shim.pid"):
            with contextlib.suppress(OSError, ValueError):
                for line in Path(f"/proc/{int(f.read_text())}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) / 1024
        return total


async def measure_pods(node: Node, count: int) -> tuple[list[float], float, float]:
    """Create pods one by one; returns create->Running latencies, agent RSS idle and at RSS_PODS pods."""
    assert node.proc is not None
    async with ApiClient(node.server.url) as api:
        running: dict[str, asyncio.Future[float]] = {}
        listed = await api.list(PODS, "default", field_selector=f"spec.nodeName={node.name}")

        async def watch() -> None:
            async for ev in api.watch(PODS, "default", resource_version=listed["metadata"]["resourceVersion"],
                                      field_selector=f"spec.nodeName={node.name}"):
                if ev.type == "BOOKMARK":
                    continue
                obj = ev.object
                fut = running.get(obj["metadata"]["name"])
                if fut is not None and not fut.done() and (obj.get("status") or {}).get("phase") == "Running":
                    fut.set_result(time.perf_counter())

        watcher = asyncio.create_task(watch())
        loop = asyncio.get_running_loop()

        async def start_one(name: str) -> float:
            running[name] = loop.create_future()
            begun = time.perf_counter()
            await api.create(PODS, pod(node.name, name))
            return await asyncio.wait_for(running[name], 60) - begun

        await start_one("warmup")  # first use: image into dockerd, sandbox image, bridge
        await api.delete(PODS, "warmup", "default", grace_period_seconds=0)
        await asyncio.sleep(3)
        idle = rss_mb(node.proc.pid)
        latencies: list[float] = []
        at_rss = float("nan")
        for i in range(max(count, RSS_PODS)):
            took = await start_one(f"p{i}")
            if i < count:
                latencies.append(took)
            if i + 1 == RSS_PODS:
                await asyncio.sleep(3)  # let the relist and status writes settle
                at_rss = rss_mb(node.proc.pid)
                if node.runtime == "runc":
                    record(BENCH, f"runc: container shims PSS total, {RSS_PODS} pods", node.shims_pss_mb(), "MB",
                           note="one python shim process per container, outside the agent's RSS")
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher
        await api.delete_collection(PODS, "default")
        return latencies, idle, at_rss


def runc_floor(layer_dir: Path, tmp: Path, count: int) -> list[float]:
    """``runc run -d`` of a prepared bundle over a copy of the same image's unpacked layer."""
    bundle = tmp / "bundle"
    bundle.mkdir()
    subprocess.run(["cp", "-a", str(layer_dir), str(bundle / "rootfs")], check=True)  # the store stays untouched
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["sleep", "100000"]
    spec["root"] = {"path": "rootfs", "readonly": True}
    root = tmp / "runc-root"
    out: list[float] = []
    for _ in range(count):
        cid = f"floor-{uuid.uuid4().hex[:8]}"
        spec["linux"]["cgroupsPath"] = f"/kubelite-bench/{cid}"  # runc's default /<id> could collide
        (bundle / "config.json").write_text(json.dumps(spec))
        begun = time.perf_counter()
        subprocess.run(["runc", "--root", str(root), "run", "-d", "--bundle", str(bundle), cid], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append(time.perf_counter() - begun)
        subprocess.run(["runc", "--root", str(root), "delete", "--force", cid], check=False, capture_output=True)
    cgroups.prune_empty_cgroup(cgroups.detect_layout(), "/kubelite-bench")
    return out


def docker_peer(d: Dockerd, count: int, image_id: str) -> list[float]:
    """``docker run -d`` of the same image, by the id the agent loaded it under (a name could pull)."""
    cli = shutil.which("docker") or "docker"
    out: list[float] = []
    for _ in range(count):
        begun = time.perf_counter()
        r = subprocess.run([cli, "-H", d.host, "run", "-d", "--network", "none", image_id, "sleep", "100000"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"docker run: {r.stderr}")
        cid = r.stdout.strip()
        out.append(time.perf_counter() - begun)
        subprocess.run([cli, "-H", d.host, "rm", "-f", cid], check=True, capture_output=True)
    return out


async def reset(runtime: str, node: Node) -> None:
    rt: Runtime = create_runtime(runtime, RuntimeOptions(node_name=node.name, data_dir=node.data_dir,
                                                         pod_cidr=node.cidr))
    await rt.reset()  # type: ignore[attr-defined]
    await rt.close()


def bench_runtime(runtime: str, count: int, image_tar: Path, dockerd: Dockerd | None) -> None:
    env = {"DOCKER_HOST": dockerd.host} if dockerd is not None else {}
    os.environ.update(env)
    with tempfile.TemporaryDirectory(prefix=f"podstart-{runtime}-") as tmp_s, guarded_pod_cidr(100, 199) as cidr:
        tmp = Path(tmp_s)
        server = start_server(tmp / "server", None, "--cluster-cidr", cidr)
        node = Node(runtime, server, cidr, tmp, env)
        try:
            node.start(image_tar)
            latencies, idle, at_rss = asyncio.run(measure_pods(node, count))
        finally:
            node.stop()
            server.stop()
            asyncio.run(reset(runtime, node))
        s = summary(latencies)
        record(BENCH, f"{runtime}: pod create to Running (watch) p50", s["p50"], "s", pods=count)
        record(BENCH, f"{runtime}: pod create to Running (watch) p99", s["p99"], "s", pods=count, target="<= 1 s",
               anchor="Kubernetes SLO 5 s")
        record(BENCH, f"{runtime}: agent RSS idle", idle, "MB", target="<= 60 MB", anchor="k3s agent 275 MB",
               bound=AGENT_RSS_BOUND)  # fmt: skip
        record(BENCH, f"{runtime}: agent RSS with {RSS_PODS} pods", at_rss, "MB")
        img = ImageStore(tmp / "agent" / "images").get(IMAGE)
        assert img is not None and len(img.layer_dirs) == 1
        if runtime == "runc":
            floor = summary(runc_floor(img.layer_dirs[0], tmp, count))
            record(BENCH, "raw runc run -d (floor) p50", floor["p50"], "s", runs=count)
            record(BENCH, "raw runc run -d (floor) p99", floor["p99"], "s", runs=count)
        if dockerd is not None:
            peer = summary(docker_peer(dockerd, count, img.id))
            record(BENCH, "docker run -d (peer) p50", peer["p50"], "s", runs=count)
            record(BENCH, "docker run -d (peer) p99", peer["p99"], "s", runs=count)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10 pods per runtime")
    p.add_argument("--pods", type=int, default=100)
    p.add_argument("--runtimes", default="runc,docker")
    args = p.parse_args()
    count = 10 if args.quick else args.pods
    with tempfile.TemporaryDirectory(prefix="podstart-image-") as tmp:
        image_tar = Path(tmp) / "busybox.tar"
        kubelite("image", "build", "busybox", "-o", str(image_tar))
        for runtime in args.runtimes.split(","):
            if runtime == "docker":
                with running_dockerd() as d:
                    bench_runtime(runtime, count, image_tar, d)
            else:
                bench_runtime(runtime, count, image_tar, None)


if __name__ == "__main__":
    main()
