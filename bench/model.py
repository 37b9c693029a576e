"""A paper model of where one kubelite server saturates and what 3 servers on etcd carry, from measured
per-node and per-pod costs (bench/hollow_bench.py, bench/store_bench.py). bench/report.py renders it
into RESULTS.md; `python bench/model.py` prints it from the current results.

The model is linear on purpose: every cost is per heartbeat or per pod start, measured at a small scale,
and multiplied out. The 1,000-node hollow run (full mode) checks it.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

# Workload assumptions, stated in the output.
PODS_PER_NODE = 30  # the Kubernetes density test's 30 pods/node
CHURN_PER_MIN = 0.01  # 1 % of pods replaced per minute
SERVERS = 3
WATCH_SHARE = 0.2  # of a write's server CPU that every other server spends applying its watch event
ETCD_ASSUMED_WRITES = 10_000.0  # writes/s for a 3-member etcd on SSD when none was measured here
HEARTBEAT_INTERVAL = 2.0  # kubelite agent default (Kubernetes renews leases every 10 s)


@dataclass
class Inputs:
    cpu_per_heartbeat_ms: float
    cpu_per_pod_ms: float
    pod_bytes: float
    events_per_pod: float
    rss_per_pod_kb: float
    sqlite_writes: float
    etcd_writes: float | None


def inputs(medians: dict[str, float]) -> tuple[Inputs | None, list[str]]:
    wanted = {
        "cpu_per_heartbeat_ms": "server CPU per node heartbeat",
        "cpu_per_pod_ms": "server CPU per pod started",
        "pod_bytes": "stored pod bytes",
        "events_per_pod": "watch events per pod started",
        "rss_per_pod_kb": "control plane RSS per pod",
        "sqlite_writes": "sqlite writes_50_concurrent",
    }
    missing = [fig for fig in wanted.values() if fig not in medians]
    if missing:
        return None, missing
    values = {k: medians[v] for k, v in wanted.items()}
    # Prefer a 3-member etcd's figure; any etcd measured here beats the assumption.
    etcd = sorted((k for k in medians if k.startswith("etcd") and k.endswith(" writes_50_concurrent")),
                  key=lambda k: "3-member" not in k)  # fmt: skip
    return Inputs(**values, etcd_writes=medians[etcd[0]] if etcd else None), []


def render(medians: dict[str, float]) -> str:
    out = ["## Scale model", ""]
    inp, missing = inputs(medians)
    if inp is None:
        out.append("Not enough measurements yet; missing: " + ", ".join(f"`{m}`" for m in missing) + ".")
        return "\n".join(out)
    churn = PODS_PER_NODE * CHURN_PER_MIN / 60  # pod starts/s per node
    hb = 1 / HEARTBEAT_INTERVAL  # heartbeats/s per node
    core_per_node = hb * inp.cpu_per_heartbeat_ms / 1000 + churn * inp.cpu_per_pod_ms / 1000
    writes_per_node = hb + churn * inp.events_per_pod  # each watch event is one stored write
    n_cpu = 1 / core_per_node  # the server's event loop is one core
    n_store = inp.sqlite_writes / writes_per_node
    one = min(n_cpu, n_store)
    mem_gb = one * PODS_PER_NODE * inp.rss_per_pod_kb / 2**20
    per_server = core_per_node * (1 / SERVERS + WATCH_SHARE * (SERVERS - 1) / SERVERS)
    etcd = inp.etcd_writes or ETCD_ASSUMED_WRITES
    n3 = min(1 / per_server, etcd / writes_per_node)
    out += [
        f"Inputs (medians): {inp.cpu_per_heartbeat_ms:.3g} ms server CPU per node heartbeat, "
        f"{inp.cpu_per_pod_ms:.3g} ms per pod started (scheduler, controllers, agent status included), "
        f"{inp.events_per_pod:.3g} watch events per pod start, {inp.pod_bytes:,.0f} bytes per stored pod, "
        f"{inp.rss_per_pod_kb:.3g} KB server RSS per pod, {inp.sqlite_writes:,.0f} SQLite writes/s.",
        "",
        f"Assumptions: heartbeat every {HEARTBEAT_INTERVAL:g} s, {PODS_PER_NODE} pods/node, "
        f"{CHURN_PER_MIN:.0%} of pods replaced per minute; one server's work runs on one core (one event loop).",
        "",
        f"- **One server** saturates at about **{one:,.0f} nodes** "
        f"({'CPU' if n_cpu <= n_store else 'SQLite writes'} bound: CPU allows {n_cpu:,.0f}, "
        f"SQLite {n_store:,.0f}); it then holds {one * PODS_PER_NODE:,.0f} pods in ≈{mem_gb:.1f} GB of pod state.",
        f"- With 10 s heartbeats (Kubernetes' Lease renewal, as in the 1,000-node run) one server's CPU allows "
        f"about **{1 / (inp.cpu_per_heartbeat_ms / 1000 / 10 + churn * inp.cpu_per_pod_ms / 1000):,.0f} nodes**.",
        f"- **{SERVERS} servers on etcd** carry about **{n3:,.0f} nodes**: requests split {SERVERS} ways, but "
        f"every server applies every watch event (assumed {WATCH_SHARE:.0%} of a write's cost) and writes are "
        f"bounded by etcd at {etcd:,.0f} writes/s"
        + (" (measured)" if inp.etcd_writes else " (assumed: no etcd measured in this run)")
        + f" ({etcd / writes_per_node:,.0f} nodes).",
    ]
    checks = []
    for k, v in medians.items():
        m = re.match(r"^server CPU idle at (\d+) hollow nodes(?: \(([\d.]+) s heartbeat\))?$", k)
        if m:
            checks.append((int(m.group(1)), float(m.group(2) or HEARTBEAT_INTERVAL), v))
    checks.sort()
    # The smallest run calibrates the per-heartbeat cost; larger ones check the linear model.
    for n, interval, measured in checks[1:]:
        predicted = n / interval * inp.cpu_per_heartbeat_ms / 1000 * 100
        beat = "" if interval == HEARTBEAT_INTERVAL else f" ({interval:g} s heartbeat)"
        out.append(f"- Check at {n:,} hollow nodes{beat}: model {predicted:.1f} % of a core idle, measured {measured:.1f} %.")
    if not any(n >= 1000 for n, _, _ in checks):
        out.append("- The 1,000-node check needs the full hollow run (`kubelite bench hollow`).")
    out += _memory_checks(medians, inp.rss_per_pod_kb)
    return "\n".join(out)


def _memory_checks(medians: dict[str, float], rss_per_pod_kb: float) -> list[str]:
    """The smallest "control plane RSS at N nodes / P pods" run gives the base; larger ones check it."""
    runs = []
    for name, mb in medians.items():
        m = re.match(r"^control plane RSS at (\d+) nodes / (\d+) pods$", name)
        if m:
            runs.append((int(m.group(2)), int(m.group(1)), mb))
    runs.sort()
    if len(runs) < 2:
        return ["- The memory check needs two hollow runs of different sizes (`kubelite bench hollow`)."]
    pods0, _, mb0 = runs[0]
    if len(runs) >= 3:  # the two smallest runs give base and slope; the larger ones check the line
        pods1, _, mb1 = runs[1]
        per_pod_kb = (mb1 - mb0) * 1024 / (pods1 - pods0)
        how = f"a line through the {pods0:,}- and {pods1:,}-pod runs: {per_pod_kb:.3g} KB per pod"
        checked = runs[2:]
    else:
        per_pod_kb, checked = rss_per_pod_kb, runs[1:]
        how = f"the {pods0:,}-pod run + {per_pod_kb:.3g} KB per pod"
    base = mb0 - pods0 * per_pod_kb / 1024
    return [f"- Memory check at {nodes:,} nodes / {pods:,} pods: model {base + pods * per_pod_kb / 1024:,.0f} MB "
            f"({how}), measured {mb:,.0f} MB."
            for pods, nodes, mb in checked]  # fmt: skip


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.report import BENCH_DIR, collect, load, medians_for_model

    print(render(medians_for_model(collect(load(BENCH_DIR / "results" / "results.jsonl")))))


if __name__ == "__main__":
    main()
