"""Docker Swarm as the peer, side by side with kubelite in the same run.

Starts its own `dockerd` (own data-root, exec-root, socket and pidfile in a temp dir on a real
filesystem; no iptables, no bridge, loopback only), `docker swarm init --advertise-addr 127.0.0.1`,
imports a busybox image, then times `docker service create --replicas 30 busybox sleep 3600` to 30/30
running and `docker service scale` to 60. dockerd is stopped by its PID at the end.

kubelite's side (a 30-replica Deployment to all available on one real runc node, then 60) runs only if
`kubelite agent --runtime runc` is available; otherwise it records nothing and says why.

    python bench/swarm_bench.py [--quick] [--replicas 30] [--scale-to 60]
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
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import Server, record, start_server
from bench.hollow_bench import at_least, available, deployment, ready_nodes, stop_process, wait_for
from kubelite.client import ApiClient
from kubelite.controllers.base import DEPLOYMENTS, PODS

BENCH = "swarm"
IMAGE = "busybox:bench"


def docker_cli() -> str:
    # Debian's client matches its dockerd; a newer one in /usr/local/bin also works (negotiates down).
    for path in ("/usr/bin/docker", shutil.which("docker")):
        if path and Path(path).exists():
            return path
    raise SystemExit("swarm bench: no docker CLI found (apt package docker.io)")


@dataclass
class Dockerd:
    root: Path
    proc: subprocess.Popen[bytes]
    cli: str

    @property
    def host(self) -> str:
        return f"unix://{self.root / 'docker.sock'}"

    def docker(self, *args: str, check: bool = True) -> str:
        res = subprocess.run([self.cli, "-H", self.host, *args], capture_output=True, text=True, check=False)
        if check and res.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {res.stderr.strip()}")
        return res.stdout.strip()

    @classmethod
    def start(cls, root: Path) -> Dockerd:
        dockerd = shutil.which("dockerd")
        if not dockerd:
            raise SystemExit("swarm bench: dockerd not found (apt package docker.io)")
        log = open(root / "dockerd.log", "ab")
        proc = subprocess.Popen(
            [dockerd, "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
             "-H", f"unix://{root / 'docker.sock'}", "--pidfile", str(root / "docker.pid"),
             "--iptables=false", "--ip-masq=false", "--bridge=none"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        d = cls(root, proc, docker_cli())
        for _ in range(300):
            if proc.poll() is not None:
                raise RuntimeError(f"dockerd exited: {(root / 'dockerd.log').read_text()[-2000:]}")
            if subprocess.run([d.cli, "-H", d.host, "version"], capture_output=True, check=False).returncode == 0:
                return d
            time.sleep(0.1)
        d.stop()
        raise RuntimeError("dockerd did not answer within 30 s")

    def stop(self) -> None:
        """Stop dockerd (and its containerd, in the same session) by PID, then free its mounts."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        unmount_under(self.root)  # dockerd leaves its netns and overlay mounts behind


def unmount_under(root: Path) -> None:
    """Lazily unmount every mount point below ``root``, deepest first, so the temp dir can be removed."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for m in sorted((m for m in mounts if m.startswith(f"{root}/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], check=False)


def remove_runc_containers(runc_root: Path) -> None:
    """Force-delete what a stopped runc agent left running (agents keep pods across restarts by design)."""
    if not runc_root.exists():
        return
    ids = subprocess.run(["runc", "--root", str(runc_root), "list", "-q"], capture_output=True, text=True, check=False)
    for cid in ids.stdout.split():
        subprocess.run(["runc", "--root", str(runc_root), "delete", "--force", cid], capture_output=True, check=False)


def build_busybox(out: Path) -> bool:
    """`kubelite image build busybox -o out` (an OCI layout tar); False if the command is not there."""
    res = subprocess.run([sys.executable, "-m", "kubelite", "image", "build", "busybox", "-o", str(out)],
                         capture_output=True, text=True, check=False)  # fmt: skip
    if res.returncode != 0:
        print(f"`kubelite image build busybox` unavailable ({res.stderr.strip()[-200:]}); using a rootfs tar")
    return res.returncode == 0 and out.exists()


def single_layer(oci_tar: Path, work: Path) -> Path | None:
    """The one layer blob of an OCI layout tar's image (a rootfs tar `docker import` takes), or None."""
    with tarfile.open(oci_tar) as tf:
        def blob(digest: str) -> bytes:
            f = tf.extractfile("blobs/" + digest.replace(":", "/"))
            assert f is not None
            return f.read()

        index = json.loads(tf.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        if len(manifest.get("layers", [])) != 1:
            return None
        layer = work / "layer.tar"
        layer.write_bytes(blob(manifest["layers"][0]["digest"]))
        return layer


def busybox_image(d: Dockerd, work: Path) -> None:
    """The same busybox image kubelite runs (`kubelite image build`), else a busybox rootfs tar."""
    oci = work / "busybox-oci.tar"
    layer = single_layer(oci, work) if build_busybox(oci) else None
    if layer is not None:
        d.docker("import", str(layer), IMAGE)
        print("busybox image: the layer of `kubelite image build busybox` (docker import)")
        return
    busybox = shutil.which("busybox")
    if not busybox:
        raise SystemExit("swarm bench: no busybox binary (apt package busybox-static)")
    rootfs = work / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy(busybox, rootfs / "bin" / "busybox")
    for applet in ("sh", "sleep"):
        (rootfs / "bin" / applet).symlink_to("busybox")
    tar = work / "busybox.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    d.docker("import", str(tar), IMAGE)
    print("busybox image: a rootfs tar of this machine's busybox (docker import)")


def wait_running(d: Dockerd, service: str, want: int, timeout: float) -> float:
    """Seconds until `docker service ls` shows want/want replicas running."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if d.docker("service", "ls", "--filter", f"name={service}", "--format", "{{.Replicas}}") == f"{want}/{want}":
            return time.perf_counter() - t0
        time.sleep(0.1)
    raise TimeoutError(f"swarm service {service} not at {want}/{want} within {timeout:.0f}s")


def swarm_run(args: argparse.Namespace, root: Path) -> tuple[float, float]:
    """(seconds to N running, seconds to scale to M running) for a Swarm service."""
    d = Dockerd.start(root)
    try:
        t0 = time.perf_counter()
        d.docker("swarm", "init", "--advertise-addr", "127.0.0.1")
        record(BENCH, "swarm init", time.perf_counter() - t0, "s")
        busybox_image(d, root)
        t0 = time.perf_counter()
        # Host network: no overlay or bridge to set up (and no traffic leaves the machine).
        d.docker("service", "create", "--detach", "--network", "host", "--name", "bench",
                 "--replicas", str(args.replicas), IMAGE, "sleep", "3600")  # fmt: skip
        wait_running(d, "bench", args.replicas, args.timeout)
        create = time.perf_counter() - t0
        record(BENCH, f"swarm service of {args.replicas} replicas: to all running", create, "s",
               anchor="Docker Swarm, same machine, same run")  # fmt: skip
        t0 = time.perf_counter()
        d.docker("service", "scale", "--detach", f"bench={args.scale_to}")
        wait_running(d, "bench", args.scale_to, args.timeout)
        scale = time.perf_counter() - t0
        record(BENCH, f"swarm scale {args.replicas} to {args.scale_to}: to all running", scale, "s",
               anchor="Docker Swarm, same machine, same run")  # fmt: skip
        d.docker("service", "rm", "bench", check=False)
        d.docker("swarm", "leave", "--force", check=False)
        return create, scale
    finally:
        d.stop()


def fs_type(path: Path) -> str:
    """File system type of the mount holding ``path`` (longest mount point prefix in /proc/mounts)."""
    best, kind = "", ""
    for line in Path("/proc/mounts").read_text().splitlines():
        mnt, typ = line.split()[1:3]
        if str(path).startswith(mnt) and len(mnt) > len(best):
            best, kind = mnt, typ
    return kind


def runc_available() -> str:
    """Empty when `kubelite agent --runtime runc` can run here, else the reason it cannot."""
    from kubelite.agent.runtimes import UnknownRuntimeError, check_runtime

    try:
        check_runtime("runc")
    except UnknownRuntimeError as e:
        return str(e)
    if not shutil.which("runc"):
        return "the runc binary is not installed"
    return ""


def start_runc_node(root: Path) -> tuple[Server, subprocess.Popen[bytes]]:
    """A server and one `kubelite agent --runtime runc`, with the busybox image imported into its store."""
    root.mkdir(parents=True, exist_ok=True)
    oci = root / "busybox-oci.tar"
    if not build_busybox(oci):
        raise SystemExit("kubelite side: `kubelite image build busybox` failed")
    subprocess.run([sys.executable, "-m", "kubelite", "image", "import", str(oci), "--data-dir", str(root / "agent")],
                   check=True, capture_output=True)  # fmt: skip
    server = start_server(root / "srv")
    log = open(root / "agent.log", "ab")
    agent = subprocess.Popen(
        [sys.executable, "-m", "kubelite", "agent", "--server", server.url, "--runtime", "runc",
         "--node-name", "bench-runc", "--node-labels", "bench-role=runc", "--data-dir", str(root / "agent"),
         "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    return server, agent


async def kubelite_runc_run(args: argparse.Namespace, url: str, agent_log: Path) -> tuple[float, float]:
    """kubelite's side: a Deployment of N replicas on one real runc node, to all available, then scaled."""
    client = ApiClient(url)
    try:
        await wait_for(lambda: at_least(ready_nodes(client, "bench-role=runc"), 1), 60, "runc node Ready")
        t0 = time.perf_counter()
        obj = deployment("bench", args.replicas, {"bench-role": "runc"})
        container = obj["spec"]["template"]["spec"]["containers"][0]
        container.update(image="busybox:latest", imagePullPolicy="IfNotPresent")  # imported above: no pull
        await client.create(DEPLOYMENTS, obj)
        await wait_for(lambda: available(client, "bench", args.replicas), args.timeout, "deployment available")
        create = time.perf_counter() - t0
        record(BENCH, f"kubelite deployment of {args.replicas} replicas on one runc node: to all available",
               create, "s", anchor="Docker Swarm, same run")  # fmt: skip
        t0 = time.perf_counter()
        await client.patch(DEPLOYMENTS, "bench", {"spec": {"replicas": args.scale_to}}, "default")
        await wait_for(lambda: available(client, "bench", args.scale_to), args.timeout, "scaled deployment available")
        scale = time.perf_counter() - t0
        record(BENCH, f"kubelite scale {args.replicas} to {args.scale_to} on one runc node: to all available",
               scale, "s", anchor="Docker Swarm, same run")  # fmt: skip
        return create, scale
    except TimeoutError:
        pods = (await client.list(PODS, "default", label_selector="app=bench"))["items"]
        phases = sorted({str(p.get("status", {}).get("phase")) for p in pods})
        print(f"kubelite side timed out; pod phases: {phases}; agent log: {agent_log}", file=sys.stderr)
        raise
    finally:
        with contextlib.suppress(Exception):  # let the agent stop its own containers first
            await client.delete(DEPLOYMENTS, "bench", "default")
            await wait_for(lambda: _no_pods(client), 60, "bench pods gone", 0.5)
        await client.close()


async def _no_pods(client: ApiClient) -> bool:
    return not (await client.list(PODS, "default", label_selector="app=bench"))["items"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the same sizes (30 and 60 are already quick)")
    p.add_argument("--replicas", type=int, default=30)
    p.add_argument("--scale-to", type=int, default=60)
    p.add_argument("--timeout", type=float, default=180.0)
    p.add_argument("--no-swarm", dest="swarm", action="store_false", help="kubelite's side only")
    p.add_argument("--no-kubelite", dest="kubelite", action="store_false", help="Swarm figures only")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="kubelite-swarm-bench-") as tmp:
        root = Path(tmp) / "docker"
        root.mkdir()
        if fs_type(root) == "overlay":
            raise SystemExit(f"swarm bench: {root} is on overlayfs, which dockerd's data-root cannot use; set TMPDIR")
        swarm = swarm_run(args, root) if args.swarm else None
        if not args.kubelite:
            return
        reason = runc_available()
        if reason:
            print(f"kubelite side skipped: {reason}; no kubelite figure recorded")
            return
        node_root = Path(tmp) / "kubelite"
        server, agent = start_runc_node(node_root)
        try:
            ours = asyncio.run(kubelite_runc_run(args, server.url, node_root / "agent.log"))
        finally:
            stop_process(agent)
            server.stop()
            remove_runc_containers(node_root / "agent" / "runc")
            unmount_under(node_root)
        if swarm:  # the ratio only holds when both ran in the same run
            record(BENCH, f"kubelite / swarm time ratio, {args.replicas} replicas", ours[0] / swarm[0], "x",
                   target="<= 1", anchor="Docker Swarm, same run")  # fmt: skip
            record(BENCH, f"kubelite / swarm time ratio, scale {args.replicas} to {args.scale_to}", ours[1] / swarm[1],
                   "x", target="<= 1", anchor="Docker Swarm, same run")  # fmt: skip


if __name__ == "__main__":
    main()
