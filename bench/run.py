"""The one entry point of the benchmark suite (also `kubelite bench`).

    python bench/run.py [NAME ...] [--quick] [--repeat N] [--list] [--results PATH] [--no-report]

Runs each named benchmark (the default set unless named) as a subprocess, N times, then regenerates
bench/RESULTS.md. Heavy invocations (``full_once``: etcd, the scheduler at 100-5,000 nodes, the
latency sweep) run in the first repetition only; the report's Runs column shows it. A bench with no
quick invocations (``cluster``, ``hollow-1000``) is skipped by ``--quick``. ``cluster-libvirt``
(VMs under TCG, ~8 minutes) runs only when named. The default full run took 25.5 minutes on the
quiet 2-core machine (seconds per invocation in the comments of BENCHES).
The scripts append their figures with bench/common.py's ``record``; after each run this harness
takes the lines that run appended and tags them with the run's id, mode (quick/full) and repeat
index, which is what the report groups medians and spreads by.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DEFAULT_RESULTS = BENCH_DIR / "results" / "results.jsonl"


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    about: str
    # Each inner list is one invocation of the script; all of them make one repetition.
    quick: list[list[str]]
    full: list[list[str]]
    repeat: int = 3  # default repetitions in full mode (quick mode runs once unless --repeat)
    # Full-mode invocations too heavy to repeat: run in the first repetition only (the report shows Runs 1).
    full_once: list[list[str]] = field(default_factory=list)
    # Substrings of figure names every quick run must produce (checked by the harness and CI).
    expects: tuple[str, ...] = ()
    needs: tuple[str, ...] = field(default=())  # executables the bench cannot run without
    default: bool = True  # part of a run that names no bench

    def invocations(self, quick: bool, repetition: int) -> list[list[str]]:
        if quick:
            return self.quick
        return self.full + (self.full_once if repetition == 0 else [])


# Seconds per bench in a default full run on the quiet 2-core machine (2026-11-27, revision c84983c):
# 14.6 min without hollow-1000, 10.9 min for it. Repeats are picked so the run stays under 30 minutes.
SCHED_SHAPE: list[str] = []  # scheduler_bench.py's defaults: 500 nodes, 500 bound + 1,000 measured pods
BENCHES: list[Bench] = [
    # 59 s: [] x3 and --etcd (1- and 3-member etcd, an etcdctl floor) once
    Bench("store", "store_bench.py", "store writes/s, reads/s, range of 30k keys (sqlite; etcd 1 and 3 members)",
          [["--quick"]], [[]], full_once=[["--etcd"]], expects=("writes_sequential", "gets_sequential")),
    # 89 s: [] x2 (30,000 pods for the LIST) and the sweep once
    Bench("api", "api_bench.py", "API latency per verb, churn p99, watch fan-out, LIST, RSS; latency vs clients",
          [["--quick"], ["--clients-sweep", "1,5,20", "--per-client", "3"]],
          [[]], full_once=[["--clients-sweep", "1,10,50,100,200"]], repeat=2,
          expects=("create latency p99", "mutating p99", "watch fan-out", "LIST of")),
    # 38 s: the shape x3 and 100, 1,000, 5,000 nodes once
    Bench("scheduler", "scheduler_bench.py", "scheduler pods/s on the scheduler_perf shape; pods/s vs nodes",
          [["--quick"], ["--nodes", "200", "--existing", "200", "--pods", "200", "--timeout", "60"]],
          [SCHED_SHAPE], full_once=[["--nodes", str(n), "--existing", str(n), "--pods", "1000"] for n in (100, 1000, 5000)],
          expects=("scheduling pods/s",)),
    # 78 s: 100 nodes / 3,000 pods and the failover
    Bench("hollow", "hollow_bench.py", "hollow nodes: Deployment to available, RSS at scale, heartbeats, failover",
          [["--quick"]], [["--nodes", "100", "--pods", "3000", "--replicas", "100"]], repeat=1,
          expects=("to all available", "control plane RSS at", "node Ready transitions", "hollow agent RSS",
                   "server CPU per node heartbeat", "node failure")),
    # 655 s: 30,000 pods available in 574 s (~52 pods/s); Kubernetes' 10 s Lease renewal (see hollow_bench.py)
    Bench("hollow-1000", "hollow_bench.py", "hollow nodes at 1,000 nodes / 30,000 pods: RSS, heartbeat lag, flapping",
          [], [["--nodes", "1000", "--pods", "30000", "--replicas", "0", "--no-failover", "--heartbeat-interval", "10",
                "--timeout", "2400"]],
          repeat=1, expects=("control plane RSS at 1000 nodes / 30000 pods",)),
    # 65 s: 50 pods per runtime, one after another, plus the raw floors
    Bench("pod_startup", "pod_startup_bench.py", "pod create to Running (runc, Docker), raw runc and docker run, agent RSS",
          [["--quick"]], [["--pods", "50"]], repeat=1, needs=("runc", "dockerd"),
          expects=("pod create to Running", "agent RSS idle", "raw runc run", "docker run -d")),
    # 197 s for 2 repetitions
    Bench("swarm", "swarm_bench.py", "Docker Swarm peer: 30 replicas to running, scale to 60; kubelite on runc",
          [["--quick"]], [[]], repeat=2, needs=("dockerd", "docker"),
          expects=("swarm service of 30 replicas", "swarm scale 30 to 60")),
    # 111 s: 6 kills (each ~17 s: the 15 s default lease runs out)
    Bench("ha", "ha_bench.py", "leader failover (kill to new lease holder, to new leader acting) on 3-member etcd; raw etcd floor",
          [["--quick"]], [["--kills", "6"]], repeat=1, needs=("etcd",),
          expects=("kill to new lease holder", "kill to new leader acting", "raw etcd writes/s")),
    # 7 s
    Bench("watch_memory", "watch_memory_bench.py", "server RSS with watch clients that stop reading (dropped at the buffer bound)",
          [["--quick"]], [[]], repeat=1, expects=("per stalled watcher",)),
    # 16 s
    Bench("fuzz", "fuzz_bench.py", "generated requests with and without credentials: responses >= 500, rejected writes",
          [["--quick"]], [["--requests", "5000"]], repeat=1, expects=("responses >= 500",)),
    # 62 s: machines booted, so full mode only, once (as root, with systemd-nspawn)
    Bench("cluster", "cluster_bench.py",
          "kubelite cluster up (nspawn 1+2) to Ready, idempotent re-run, node failure on real machines, add-node, down",
          [], [[]], repeat=1, needs=("systemd-nspawn",),
          expects=("up to all Ready", "idempotent re-run", "node failure, pods running elsewhere")),
    # ~450 s (VMs under TCG: up 239 s, add-node 141 s): not part of the default full run, run it by name.
    Bench("cluster-libvirt", "cluster_bench.py", "kubelite cluster up (libvirt VMs 1+1) to Ready, idempotent re-run, add-node, down",
          [], [["--provider", "libvirt"]], repeat=1, needs=("qemu-img", "qemu-system-x86_64"), default=False,
          expects=("up to all Ready", "idempotent re-run")),
]
BY_NAME = {b.name: b for b in BENCHES}
DEFAULT = [b.name for b in BENCHES if b.default]


def read_rows_from(path: Path, offset: int) -> list[dict[str, Any]]:
    """Rows appended to ``path`` after byte ``offset`` (the file is truncated back to ``offset``)."""
    if not path.exists() or path.stat().st_size <= offset:
        return []
    with path.open("r+b") as f:
        f.seek(offset)
        tail = f.read()
        f.truncate(offset)
    rows = []
    for line in tail.decode(errors="replace").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def run_once(bench: Bench, args: list[str], results: Path, tags: dict[str, Any], log_dir: Path) -> list[dict[str, Any]]:
    """One invocation; returns the rows it recorded, tagged, after appending them to ``results``."""
    staging = log_dir / f"{bench.name}-{uuid.uuid4().hex[:8]}.jsonl"
    # bench/common.py record() writes where KUBELITE_BENCH_RESULTS points: a staging file per run,
    # whose rows are then appended to `results` with the run's tags.
    env = {**os.environ, "KUBELITE_BENCH_RESULTS": str(staging), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(BENCH_DIR / bench.script), *args]
    print(f"==> {bench.name}: {' '.join(cmd[1:])}", flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, check=False)
    rows = read_rows_from(staging, 0) if staging.exists() else []
    rows = [{**r, **tags, "args": args} for r in rows]
    results.parent.mkdir(parents=True, exist_ok=True)
    with results.open("a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    if proc.returncode != 0:
        raise BenchFailed(f"{bench.name} {' '.join(args)}: exit code {proc.returncode}")
    return rows


class BenchFailed(RuntimeError):
    pass


def missing_tools(bench: Bench) -> list[str]:
    from shutil import which

    return [t for t in bench.needs if which(t) is None]


def run(names: list[str], quick: bool, repeat: int | None, results: Path) -> tuple[list[str], dict[str, list[str]]]:
    """Run the benches; returns (failures, figures produced per bench)."""
    run_id = uuid.uuid4().hex[:12]
    failures: list[str] = []
    produced: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="kubelite-bench-run-") as tmp:
        for bench in (BY_NAME[n] for n in names):
            produced[bench.name] = []
            if quick and not bench.quick:
                print(f"<== {bench.name}: no quick mode (full runs only), skipped", flush=True)
                continue
            tools = missing_tools(bench)
            if tools:
                failures.append(f"{bench.name}: needs {', '.join(tools)} (not found on PATH)")
                continue
            times = repeat if repeat is not None else (1 if quick else bench.repeat)
            t0 = time.perf_counter()
            for i in range(times):
                tags = {"run_id": run_id, "mode": "quick" if quick else "full", "repeat": i}
                for args in bench.invocations(quick, i):
                    try:
                        rows = run_once(bench, args, results, tags, Path(tmp))
                    except BenchFailed as e:
                        failures.append(str(e))
                        continue
                    produced[bench.name] += [r["figure"] for r in rows]
            print(f"<== {bench.name}: {len(produced[bench.name])} figures in {time.perf_counter() - t0:.0f}s", flush=True)
            if quick:
                missing = [e for e in bench.expects if not any(e in f for f in produced[bench.name])]
                if missing:
                    failures.append(f"{bench.name}: no figure matching {', '.join(map(repr, missing))}")
    return failures, produced


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", metavar="NAME",
                   help=f"benchmarks to run (default: {', '.join(DEFAULT)}; also: {', '.join(sorted(set(BY_NAME) - set(DEFAULT)))})")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="small sizes, one repetition: checks every figure is produced")
    p.add_argument("--repeat", type=int, default=None, help="repetitions per benchmark (default: 1 quick; full: each bench's own, see --list)")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="JSON lines file to append to")
    p.add_argument("--report", type=Path, default=None,
                   help="RESULTS.md to regenerate (default: bench/RESULTS.md, or next to --results)")  # fmt: skip
    p.add_argument("--no-report", action="store_true")
    args = p.parse_args(argv)
    if args.list:
        for b in BENCHES:
            print(f"{b.name:<15} full x{b.repeat}  {b.about}{'' if b.default else ' (only when named)'}")
        return 0
    unknown = [n for n in args.names if n not in BY_NAME]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(BY_NAME)})", file=sys.stderr)
        return 2
    if args.repeat is not None and args.repeat < 1:
        print("--repeat must be at least 1", file=sys.stderr)
        return 2
    results = args.results.resolve()
    failures, _ = run(args.names or DEFAULT, args.quick, args.repeat, results)
    if not args.no_report:
        sys.path.insert(0, str(ROOT))
        from bench.report import write_report

        report = args.report or (BENCH_DIR / "RESULTS.md" if results == DEFAULT_RESULTS else results.parent / "RESULTS.md")
        write_report(results, report)
        print(f"report: {report}")
    for f in failures:
        print(f"FAILED: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
