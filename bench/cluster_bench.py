"""Provisioning figures: `kubelite cluster up` (nspawn, 1 master + 2 workers) to all nodes Ready, the
idempotent re-run, and add-node — as root, with the node image already cached (built first if not).

    sudo .venv/bin/python -m bench.cluster_bench [--provider libvirt]

``--provider libvirt`` measures 1 master + 1 worker VMs instead (libvirtd must be running; the guest
image cached, built first if not).

Anchors (published): kind 46.6 s, minikube kvm2 ~50 s, k3sup "< 1 min"; targets here: up <= 45 s,
re-run <= 15 s. Uses its own cluster name and address ranges, and removes the cluster at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import ROOT, record

NAME = "klbench"
SPEC = {
    "name": NAME, "provider": "nspawn", "masters": 1, "workers": 2, "runtime": "runc", "images": ["busybox"],
    "resources": {"cpu": 2, "memory": "1Gi"},
    "network": {"nodes": "10.248.0.0/24", "pods": "10.248.64.0/18", "services": "10.248.128.0/20"},
}  # fmt: skip
# VMs: 1+1 with one vCPU each (under TCG a vCPU is a host thread), on ranges of their own.
LIBVIRT_SPEC = {
    **SPEC, "name": "klbenchvm", "provider": "libvirt", "workers": 1, "resources": {"cpu": 1, "memory": "1Gi"},
    "network": {"nodes": "10.245.0.0/24", "pods": "10.245.64.0/18", "services": "10.245.128.0/20"},
}  # fmt: skip


def _cli(env: dict[str, str], *args: str) -> float:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "kubelite", "cluster", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    took = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"kubelite cluster {' '.join(args)} failed:\n{proc.stderr}")
    return took


def main() -> None:
    from kubelite.provision.image import ensure_image
    from kubelite.provision.wheelhouse import ensure_wheelhouse

    parser = argparse.ArgumentParser()
    parser.add_argument("--provider", choices=("nspawn", "libvirt"), default="nspawn")
    provider = parser.parse_args().provider
    spec_doc = LIBVIRT_SPEC if provider == "libvirt" else SPEC
    workers = 1 if provider == "libvirt" else 2
    name, shape = str(spec_doc["name"]), f"{provider} 1+{workers}"
    if provider == "libvirt":
        from kubelite.provision.guest_image import ensure_guest_image

        ensure_guest_image()
    else:
        ensure_image()  # the figures are for a cached image, as the targets are
    ensure_wheelhouse()
    with tempfile.TemporaryDirectory(prefix="kl-bench-") as tmp:
        env = {**os.environ, "KUBELITE_STATE_DIR": str(Path(tmp) / "state")}
        spec = Path(tmp) / "spec.yaml"
        spec.write_text(yaml.safe_dump(spec_doc))
        try:
            up = _cli(env, "up", str(spec))
            target = {"target": "<= 45 s"} if provider == "nspawn" else {}  # the 45 s target is for nspawn machines
            record("cluster", f"{shape}: up to all Ready (image cached)", up, "s", **target)
            again = _cli(env, "up", str(spec))
            record("cluster", f"{shape}: idempotent re-run of up", again, "s", target="<= 15 s")
            add = _cli(env, "add-node", name)
            record("cluster", f"{provider}: add-node to Ready", add, "s")
        finally:
            down = _cli(env, "down", name)
        record("cluster", f"{provider} 1+{workers + 1}: down", down, "s")


if __name__ == "__main__":
    main()
