"""Shared bench plumbing: start a server, percentiles, and recording figures as JSON lines."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# `kubelite bench` points each script at its own staging file; run alone, a script appends here.
RESULTS = Path(os.environ.get("KUBELITE_BENCH_RESULTS") or ROOT / "bench" / "results" / "results.jsonl")


def git_rev() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def machine() -> dict[str, Any]:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "mem_gib": round(mem_kb / 2**20, 1), "python": platform.python_version(),
            "kernel": platform.release()}  # fmt: skip


def record(bench: str, figure: str, value: float, unit: str, **extra: Any) -> dict[str, Any]:
    """Print one figure and append it to bench/results/results.jsonl."""
    row = {
        "bench": bench,
        "figure": figure,
        "value": round(value, 4),
        "unit": unit,
        "git": git_rev(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **extra,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"{bench:>12}  {figure:<48} {value:>12.4g} {unit}", flush=True)
    return row


def percentile(samples: list[float], p: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(samples: list[float]) -> dict[str, float]:
    return {"p50": percentile(samples, 50), "p99": percentile(samples, 99), "mean": statistics.fmean(samples) if samples else 0.0}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    url: str  # the loopback plain-HTTP port (no authentication)
    proc: subprocess.Popen[bytes]
    tls_url: str = ""  # the secure port (TLS; clients authenticate, e.g. with <data-dir>/kubeconfig.yaml)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(data_dir: Path, store_url: str | None = None, *extra: str) -> Server:
    port, tls_port = free_port(), free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(data_dir / "server.log", "ab")
    proc = subprocess.Popen(
        # The benches measure the API itself: they use the loopback plain-HTTP port (no TLS, no auth).
        [sys.executable, "-m", "kubelite", "server", "--insecure-port", str(port), "--port", str(tls_port),
         "--data-dir", str(data_dir),
         "--datastore-endpoint", store_url or f"sqlite:///{data_dir}/state.db", "--log-level", "warning", *extra],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(400):
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {(data_dir / 'server.log').read_text()}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1):
                return Server(url, proc, f"https://127.0.0.1:{tls_port}")
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not become ready")
