"""Regenerates bench/RESULTS.md (and bench/plots/*.png) from bench/results/results.jsonl.

    python bench/report.py [--results PATH] [--out bench/RESULTS.md] [--no-plots]

For each figure: the median and spread (min-max) over the runs of the newest git revision that measured
it, the target and the anchor it is compared to, and whether the median meets the target. Plots need
matplotlib (`pip install kubelite[bench]`); without it the tables are still written and the plots skipped.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import model

BENCH_DIR = Path(__file__).resolve().parent

AREAS = {
    "store": "Storage drivers",
    "api": "API server",
    "scheduler": "Scheduler",
    "hollow": "Hollow nodes: convergence, memory, heartbeats, failover",
    "swarm": "Side by side: Docker Swarm and kubelite on a real node",
    "ha": "HA control plane: leader failover",
}

# Anchors (and targets) for figures whose script recorded none: (figure regex, target, anchor).
DEFAULT_ANCHORS: list[tuple[str, str, str]] = [
    (r"^create latency p99", "<= 1000 ms", "Kubernetes SLO: mutating API call p99 <= 1 s"),
    (r"^get latency p99", "<= 1000 ms", "Kubernetes SLO: single-object read p99 <= 1 s"),
    (r"^list latency p99", "<= 5000 ms", "Kubernetes SLO: namespace LIST p99 <= 5 s"),
    (r"^mutating p99", "", "Kubernetes SLO: mutating API call p99 <= 1 s (50 ms is this project's target)"),
    (r"scheduler_perf .*pods/s", "", "kube-scheduler scheduler_perf throughput gate (SchedulingBasic)"),
    (r"^watch fan-out to \d+ watchers p99$", "<= 100 ms", "this project's target; Kubernetes publishes no watch latency SLO"),
    (r"^leader failover: kill to new (lease holder|leader acting).* p50$", "<= 20 s",
     "Kubernetes leader election defaults (15 s lease, 2 s retry): about 17 s"),
    (r"^libvirt .*: up to all Ready", "<= 300 s",
     "kind 46.6 s, minikube kvm2 ~50 s, both with KVM; these VMs run under TCG (no usable KVM here)"),
]

# What bounds a figure whose rows carry no "bound" of their own, when it misses: (figure regex, why).
DEFAULT_BOUNDS: list[tuple[str, str]] = [
    (r"^libvirt .*: idempotent re-run", "the same deploy re-runs in about 6 s on nspawn machines (same revision); a VM runs "
     "each of pyinfra's fact and check commands under TCG (no usable KVM here), several times slower"),
]

# The figures the benchmark issue asks for, in its order: (label, figure regex, how to get it when absent).
# RESULTS.md opens with them, each from the most complete mode that measured it (full, direct, quick).
ISSUE_FIGURES: list[tuple[str, str, str]] = [
    ("store writes/s (SQLite)", r"^sqlite writes_(sequential|50_concurrent)$|^sqlite / (raw )?etcd", "`kubelite bench store`"),
    ("store writes/s (etcd driver, raw etcd floor)", r"^etcd driver writes/s|^raw etcd writes/s|^etcd driver / raw etcd",
     "needs etcd on PATH (`kubelite bench store`)"),
    ("API p50/p99 per verb under churn", r"^(create|get|list) latency p(50|99) \(100 clients\)$|^mutating p(50|99) at",
     "`kubelite bench api`"),
    ("watch fan-out latency", r"^watch fan-out to 100 watchers p(50|99)$", "`kubelite bench api`"),
    ("scheduler pods/s, scheduler_perf shape (500 nodes, 500 + 1,000 pods)", r"^scheduler_perf 500 nodes: .*pods/s",
     "`kubelite bench scheduler`"),
    ("scheduler pods/s at 5,000 hollow nodes", r"^scheduler_perf 5000 nodes: .*pods/s", "full run only (`kubelite bench scheduler`)"),
    ("pod startup p50/p99, runc and Docker", r"^(runc|docker): pod create to Running .*p(50|99)$", "`kubelite bench pod_startup`"),
    ("raw runc start (floor for pod start)", r"^raw runc", "`kubelite bench pod_startup`"),
    ("Deployment of 30 replicas on one real node; Docker Swarm side by side",
     r"^kubelite deployment of 30 replicas|^kubelite scale 30|^swarm (service|scale)|^kubelite / swarm", "`kubelite bench swarm`"),
    ("control plane RSS at 100 nodes / 3,000 pods and 1,000 nodes / 30,000 pods", r"^control plane RSS at (100|1000) nodes",
     "full run only (`kubelite bench hollow hollow-1000`)"),
    ("agent RSS", r"agent RSS idle$|^agent RSS \(one hollow", "`kubelite bench pod_startup`"),
    ("node failure → pods elsewhere (hollow)", r"^node failure: .*hollow", "`kubelite bench hollow`"),
    ("node failure → pods elsewhere (real nodes)", r"^(nspawn|libvirt) .*(node failure|powered-off node back)", "full run only (`kubelite bench cluster`)"),
    ("cluster up time (nspawn, libvirt)", r"up to all Ready", "`kubelite bench cluster cluster-libvirt` (as root)"),
    ("idempotent re-run time", r"idempotent", "`kubelite bench cluster` (as root)"),
    ("HA leader failover (3 servers on etcd)", r"^leader failover: .* p50$", "`kubelite bench ha`"),
]

# Ratios of two figures measured in the same run (by median): (name, numerator, denominator, target, anchor).
RATIOS: list[tuple[str, str, str, str, str]] = [
    ("sqlite / etcd writes/s (50 concurrent)", "sqlite writes_50_concurrent", "etcd-1-member writes_50_concurrent",
     ">= 0.5", "etcd, 1 member, 50 concurrent writers, same run"),
    ("sqlite / raw etcd writes/s (sequential)", "sqlite writes_sequential", "raw etcd writes/s (gateway, sequential)",
     ">= 0.5", "raw etcd (1 member, fsync per write) through its gateway, same run"),
    ("etcd driver / raw etcd writes/s", "etcd driver writes/s (sequential, same cluster as raw)",
     "raw etcd writes/s (gateway, sequential)", ">= 0.5", "raw etcd through its gateway, same run (the floor)"),
]

_TARGET = re.compile(r"^\s*(<=|>=|<|>|≤|≥)\s*([-+0-9.eE]+)\s*(\S+)?\s*$")
_SCALE = {"ms": ("s", 1e-3), "s": ("s", 1.0), "min": ("s", 60.0), "KB": ("B", 1024.0), "MB": ("B", 2.0**20),
          "GB": ("B", 2.0**30), "KiB": ("B", 1024.0), "MiB": ("B", 2.0**20), "GiB": ("B", 2.0**30), "bytes": ("B", 1.0)}  # fmt: skip


@dataclass
class Figure:
    bench: str
    name: str
    mode: str
    unit: str
    git: str
    values: list[float] = field(default_factory=list)
    target: str = ""
    anchor: str = ""
    bound: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def verdict(self) -> str:
        return judge(self.median, self.unit, self.target)


def load(path: Path) -> list[dict[str, Any]]:
    """Rows of the results file; lines from before the current format (no bench/git) are ignored."""
    rows: list[dict[str, Any]] = []
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and {"bench", "figure", "value", "unit", "git"} <= row.keys():
            rows.append(row)
    return rows


def judge(value: float, unit: str, target: str) -> str:
    """'met', 'missed', or '' when the target is absent or not a comparison."""
    m = _TARGET.match(str(target or ""))
    if not m:
        return ""
    op, threshold, t_unit = m.group(1), float(m.group(2)), m.group(3)
    if t_unit and t_unit != unit and t_unit in _SCALE and unit in _SCALE and _SCALE[t_unit][0] == _SCALE[unit][0]:
        threshold = threshold * _SCALE[t_unit][1] / _SCALE[unit][1]
    ok = {"<=": value <= threshold, "≤": value <= threshold, ">=": value >= threshold, "≥": value >= threshold,
          "<": value < threshold, ">": value > threshold}[op]  # fmt: skip
    return "met" if ok else "missed"


def collect(rows: list[dict[str, Any]]) -> list[Figure]:
    """One Figure per (bench, figure, mode), from the runs of the newest revision that measured it."""
    newest: dict[tuple[str, str, str], tuple[str, str]] = {}  # key -> (date, git) of its newest row
    for r in rows:
        key = (r["bench"], r["figure"], r.get("mode", "direct"))
        if key not in newest or r.get("date", "") >= newest[key][0]:
            newest[key] = (r.get("date", ""), r["git"])
    figures: dict[tuple[str, str, str], Figure] = {}
    for r in rows:
        key = (r["bench"], r["figure"], r.get("mode", "direct"))
        if r["git"] != newest[key][1]:
            continue
        fig = figures.setdefault(key, Figure(r["bench"], r["figure"], key[2], r["unit"], r["git"]))
        fig.values.append(float(r["value"]))
        fig.target = r.get("target") or fig.target
        fig.anchor = r.get("anchor") or fig.anchor
        fig.bound = r.get("bound") or fig.bound
        fig.extra.update({k: v for k, v in r.items() if k in ("nodes", "pods", "clients", "interval")})
    for fig in figures.values():
        for pattern, why in DEFAULT_BOUNDS:
            if re.search(pattern, fig.name):
                fig.bound = fig.bound or why
        for pattern, target, anchor in DEFAULT_ANCHORS:
            if re.search(pattern, fig.name):
                fig.target = fig.target or target
                fig.anchor = fig.anchor or anchor
    return sorted(figures.values(), key=lambda f: (list(AREAS).index(f.bench) if f.bench in AREAS else 99,
                                                  f.bench, f.mode != "full", f.name))  # fmt: skip


def derived(figs: list[Figure]) -> list[Figure]:
    """The RATIOS, per mode, where both sides were measured by the same revision."""
    by_key = {(f.name, f.mode): f for f in figs}
    out: list[Figure] = []
    for name, num, den, target, anchor in RATIOS:
        for mode in ("full", "direct", "quick"):
            a, b = by_key.get((num, mode)), by_key.get((den, mode))
            if a and b and a.git == b.git and b.median:
                out.append(Figure(a.bench, name, mode, "x", a.git, [a.median / b.median], target, anchor))
    return out


# What a headline figure without a target of its own is there for: (figure regex, shown as its result).
ROLES: list[tuple[str, str]] = [
    (r"^raw |^etcd-\d-member etcdctl", "floor (anchor)"),
    (r"^swarm (service|scale)", "peer (anchor)"),
    (r"^(etcd driver writes/s|sqlite writes_|kubelite deployment of 30|kubelite scale 30)", "side of a ratio"),
    (r"back to Ready$", "after the failover above (no target)"),
]


def role(name: str) -> str:
    return next((why for pattern, why in ROLES if re.search(pattern, name)), "— (no target)")


def headline(figs: list[Figure]) -> tuple[list[str], list[Figure], list[tuple[str, str]]]:
    """The issue's figures: table lines, the figures shown, and (label, how) for those not measured."""
    out = ["| Issue figure | Figure | Mode | Median | Unit | Runs | Target | Anchor | Result |",
           "| --- | --- | --- | ---: | --- | ---: | --- | --- | --- |"]  # fmt: skip
    shown: list[Figure] = []
    pending: list[tuple[str, str]] = []
    for label, pattern, how in ISSUE_FIGURES:
        matches = [f for f in figs if re.search(pattern, f.name)]
        if not matches:
            pending.append((label, how))
            out.append(f"| {label} | not measured yet: {how} | | | | | | | |")
            continue
        best: dict[str, Figure] = {}  # per figure name, its most complete mode
        for f in sorted(matches, key=lambda f: _MODE_RANK.get(f.mode, 9)):
            best.setdefault(f.name, f)
        rows = 0
        for f in sorted(best.values(), key=lambda f: f.name):
            p50 = best.get(f.name.replace(" p99", " p50")) if " p99" in f.name else None
            if " p50" in f.name and f.name.replace(" p50", " p99") in best:
                continue  # shown on its p99's row
            shown.append(f)
            name, value = f.name, fmt(f.median)
            if p50 is not None:  # the SLOs bound p99: one row, the p50 beside it
                name, value = f.name.replace(" p99", " p50 / p99"), f"{fmt(p50.median)} / {fmt(f.median)}"
            out.append(f"| {label if rows == 0 else ''} | {name} | {f.mode} | {value} | {f.unit} | {len(f.values)} | "
                       f"{f.target or '—'} | {f.anchor or '—'} | {MARK[f.verdict] if f.target else role(f.name)} |")  # fmt: skip
            rows += 1
    return out, shown, pending


def medians_for_model(figs: list[Figure]) -> dict[str, float]:
    """Median per figure name, a full run's in preference to a quick one's."""
    medians = {f.name: f.median for f in figs if f.mode != "full"}
    medians.update({f.name: f.median for f in figs if f.mode == "full"})
    for f in figs:  # idle CPU of a run with another heartbeat interval: the model's check scales by it
        if f.name.startswith("server CPU idle at ") and f.extra.get("interval") not in (None, model.HEARTBEAT_INTERVAL):
            medians[f"{f.name} ({f.extra['interval']:g} s heartbeat)"] = medians.pop(f.name, f.median)
    return medians


def fmt(v: float) -> str:
    if v != v:  # NaN
        return "n/a"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


MARK = {"met": "✅ met", "missed": "❌ missed", "": "—"}


def table(figs: list[Figure]) -> list[str]:
    out = ["| Figure | Mode | Median | Spread (min\u2013max) | Runs | Unit | Target | Anchor | Result |",
           "| --- | --- | ---: | --- | ---: | --- | --- | --- | --- |"]  # fmt: skip
    for f in figs:
        spread = f"{fmt(min(f.values))} \u2013 {fmt(max(f.values))}" if len(f.values) > 1 else "single run"
        out.append(f"| {f.name} | {f.mode} | {fmt(f.median)} | {spread} | {len(f.values)} | {f.unit} | "
                   f"{f.target or '—'} | {f.anchor or '—'} | {MARK[f.verdict]} |")  # fmt: skip
    return out


_MODE_RANK = {"full": 0, "direct": 1, "quick": 2}


def _series(figs: list[Figure], pattern: str) -> dict[str, list[tuple[float, float]]]:
    """{series label: sorted (x, median)} for figures whose name matches ``pattern`` (named groups x, label).

    Each series takes its points from one mode only, the most complete one (full, then direct, then quick):
    sizes differ between modes, so mixing them would draw a curve that was never measured.
    """
    by_mode: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    rx = re.compile(pattern)
    for f in figs:
        m = rx.search(f.name)
        if m:
            by_mode[(m.group("label"), f.mode)].append((float(m.group("x")), f.median))
    series: dict[str, list[tuple[float, float]]] = {}
    for (label, mode), points in sorted(by_mode.items(), key=lambda kv: _MODE_RANK.get(kv[0][1], 9)):
        if len(points) >= 2 and label not in {k.rsplit(" (", 1)[0] for k in series}:
            series[f"{label} ({mode})"] = sorted(points)
    return series


PLOTS: list[tuple[str, str, str, str, str, bool]] = [
    # file, title, figure regex (named groups x and label), x label, y label, log axes
    ("scheduler_throughput_vs_nodes.png", "Scheduler throughput vs node count",
     r"^scheduler_perf (?P<x>\d+) nodes: (?P<label>scheduling pods/s \(pods pre-created\)|pods/s)$",
     "nodes", "pods/s", True),
    ("api_latency_vs_concurrency.png", "API latency vs concurrent clients",
     r"^(?P<label>\w+ latency p(50|99)) \((?P<x>\d+) clients\)$", "concurrent clients", "ms", True),
]  # fmt: skip


def plots(figs: list[Figure], out_dir: Path) -> list[str]:
    """Markdown for the plots written to ``out_dir`` (or a note why there are none)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["Plots skipped: matplotlib is not installed (`pip install -e '.[bench]'`)."]
    lines: list[str] = []
    for filename, title, pattern, xlabel, ylabel, log in PLOTS:
        series = _series(figs, pattern)
        if not series:
            lines.append(f"- {title}: not enough points yet (needs the sweep of a full run).")
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(7, 4))
        for label, points in sorted(series.items()):
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(out_dir / filename, dpi=100)
        plt.close(fig)
        lines.append(f"![{title}](plots/{filename})")
    return lines


def render(rows: list[dict[str, Any]], plot_dir: Path | None) -> str:
    figs = collect(rows)
    out = ["# kubelite benchmark results", "",
           "Generated by `bench/report.py` from `bench/results/results.jsonl`; do not edit by hand. "
           "Run `kubelite bench [NAME…] [--quick]` to measure again (it regenerates this file).", ""]  # fmt: skip
    if not figs:
        return "\n".join([*out, "No results yet.", ""])
    latest = max(rows, key=lambda r: r.get("date", ""))
    mach = latest.get("machine", {})
    out.append(f"Latest run: revision `{latest['git']}`, {latest.get('date', '?')}, machine: "
               + ", ".join(f"{k} {v}" for k, v in mach.items()) + ".")  # fmt: skip
    figs += derived(figs)
    head, shown, pending = headline(figs)
    counts = {v: sum(1 for f in figs if f.verdict == v) for v in ("met", "missed", "")}
    issue = {v: sum(1 for f in shown if f.verdict == v) for v in ("met", "missed", "")}
    anchors = sum(1 for f in shown if not f.target and role(f.name) != "— (no target)")  # incl. follow-ups
    out += ["", f"The issue's figures: **{issue['met']} met, {issue['missed']} missed**, {anchors} anchors or sides of a "
            f"ratio, {issue[''] - anchors} without a target, "
            f"{len(pending)} not measured yet. All figures: **{counts['met']} met, {counts['missed']} missed**, "
            f"{counts['']} without a target. Median and spread are over the repeated runs of the newest revision that "
            "measured each figure; `full` is `kubelite bench`, `quick` its CI-sized `--quick`, `direct` a script run by "
            "hand with other sizes: they are not comparable with each other.", "",
            "## The figures the benchmark issue asks for", "", *head, ""]  # fmt: skip
    by_bench: dict[str, list[Figure]] = defaultdict(list)
    for f in figs:
        by_bench[f.bench].append(f)
    for bench, bfigs in by_bench.items():
        out += [f"## {AREAS.get(bench, bench)}", ""]
        full = [f for f in bfigs if f.mode == "full"]
        other = [f for f in bfigs if f.mode != "full"]
        out += [*table(full), ""] if full else ["No full run has measured this area yet.", ""]
        if other:
            out += ["<details><summary>Quick and direct runs</summary>", "", *table(other), "", "</details>", ""]
    if plot_dir is not None:
        out += ["## Plots", "", *plots(figs, plot_dir), ""]
    # A quick or direct run's miss counts only while no full run has measured that figure.
    in_full = {f.name for f in figs if f.mode == "full"}
    missed = [f for f in figs if f.verdict == "missed" and (f.mode == "full" or f.name not in in_full)]
    if missed:
        out += ["## Missed targets: what bounds them", ""]
        out += [f"- {f.name} ({f.mode}): {f.bound or 'not profiled yet (py-spy / pyinstrument)'}" for f in missed]
        out.append("")
    if pending:
        out += ["## Not measured yet", "", *[f"- {label}: {why}" for label, why in pending], ""]
    out += [model.render(medians_for_model(figs)), ""]
    return "\n".join(out)


def write_report(results: Path, out: Path, with_plots: bool = True) -> None:
    text = render(load(results), out.parent / "plots" if with_plots else None)
    out.write_text(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=BENCH_DIR / "results" / "results.jsonl")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "RESULTS.md")
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args()
    write_report(args.results, args.out, not args.no_plots)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
