"""bench/report.py: RESULTS.md from a synthetic results file (tables, medians, spreads, met/missed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import report


def row(bench: str, figure: str, value: float, unit: str, git: str = "abc1234", date: str = "2026-01-02T00:00:00+00:00",
        **extra: Any) -> dict[str, Any]:  # fmt: skip
    return {"bench": bench, "figure": figure, "value": value, "unit": unit, "git": git, "date": date,
            "machine": {"cpus": 2}, **extra}  # fmt: skip


def write(path: Path, rows: list[dict[str, Any]], legacy: bool = True) -> Path:
    lines = [json.dumps(r) for r in rows]
    if legacy:  # the file's first lines predate the current format
        lines.insert(0, json.dumps({"figure": "store.sqlite.old", "value": 1, "unit": "x", "git_rev": "uncommitted"}))
        lines.insert(1, "not json")
    path.write_text("\n".join(lines) + "\n")
    return path


def table_row(text: str, figure: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells and cells[0] == figure:
            return cells
    raise AssertionError(f"no table row for {figure!r} in:\n{text}")


@pytest.fixture
def results(tmp_path: Path) -> Path:
    rows = [
        # An older revision's runs must not count towards the median.
        row("api", "mutating p99 at 100 ops/s churn", 900.0, "ms", git="old0000", date="2025-12-01T00:00:00+00:00",
            target="<= 50 ms", mode="full"),
        *(row("api", "mutating p99 at 100 ops/s churn", v, "ms", target="<= 50 ms", mode="full") for v in (3.0, 9.0, 4.0)),
        *(row("api", "LIST of 30000 pods", v, "s", target="<= 2 s", mode="full") for v in (2.5, 2.1, 3.0)),
        row("hollow", "control plane RSS at 20 nodes / 200 pods", 0.09, "GB", target="<= 1596 MB", mode="quick",
            anchor="k3s server with a workload"),
        row("hollow", "node failure: pods running elsewhere (hollow, 4 nodes)", 14.0, "s", mode="quick",
            target="<= 340 s", anchor="Kubernetes defaults"),
        row("store", "sqlite writes_sequential", 4000.0, "writes/s", mode="quick"),
        row("store", "sqlite writes_sequential", 4500.0, "writes/s", mode="full"),
    ]
    return write(tmp_path / "results.jsonl", rows)


def test_median_spread_and_marks(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    report.write_report(results, out, with_plots=False)
    text = out.read_text()

    churn = table_row(text, "mutating p99 at 100 ops/s churn")
    # Figure | Mode | Median | Spread | Runs | Unit | Target | Anchor | Result
    assert churn[1:6] == ["full", "4.00", "3.00 \u2013 9.00", "3", "ms"]
    assert churn[6] == "<= 50 ms" and "met" in churn[8] and "missed" not in churn[8]
    assert "Kubernetes SLO" in churn[7]  # default anchor filled in for a figure recorded without one

    listing = table_row(text, "LIST of 30000 pods")
    assert listing[2] == "2.50" and "missed" in listing[8]

    # Units convert before comparing: 0.09 GB is under 1596 MB.
    rss = table_row(text, "control plane RSS at 20 nodes / 200 pods")
    assert "met" in rss[8] and rss[7] == "k3s server with a workload"
    assert table_row(text, "sqlite writes_sequential")[8] == "—"

    assert "## API server" in text and "## Storage drivers" in text and "## Hollow nodes" in text
    assert "**3 met, 1 missed**" in text
    assert "LIST of 30000 pods (full): not profiled yet" in text
    assert "900" not in text and "store.sqlite.old" not in text


def test_quick_and_full_are_separate_rows(results: Path) -> None:
    text = report.render(report.load(results), None)
    rows = [line for line in text.splitlines() if line.startswith("| sqlite writes_sequential |")]
    assert len(rows) == 2
    assert {r.split("|")[2].strip(): r.split("|")[3].strip() for r in rows} == {"full": "4,500", "quick": "4,000"}


def test_pending_figures_and_model_inputs_listed(results: Path) -> None:
    text = report.render(report.load(results), None)
    assert "## Not measured yet" in text
    assert "- pod startup p50/p99, runc and Docker: `kubelite bench pod_startup`" in text
    assert "Not enough measurements yet; missing: `server CPU per node heartbeat`" in text


def test_model_renders_from_measured_costs() -> None:
    from bench import model

    medians = {"server CPU per node heartbeat": 1.0, "server CPU per pod started": 10.0, "stored pod bytes": 2000.0,
               "watch events per pod started": 3.0, "control plane RSS per pod": 50.0,
               "sqlite writes_50_concurrent": 50_000.0, "server CPU idle at 20 hollow nodes": 1.0,
               "server CPU idle at 1000 hollow nodes": 60.0}  # fmt: skip
    text = model.render(medians)
    # 1 ms per heartbeat every 2 s plus 0.005 pod starts/s/node at 10 ms: 0.00055 core per node -> ~1,818 nodes.
    assert "about **1,818 nodes**" in text
    # The smallest run calibrates; the 1,000-node run checks the linear model.
    assert "Check at 1,000 hollow nodes: model 50.0 % of a core idle, measured 60.0 %" in text
    assert "Check at 20 " not in text
    assert "assumed: no etcd measured" in text
    medians["etcd-1-member writes_50_concurrent"] = 700.0
    assert "etcd at 700 writes/s (measured)" in model.render(medians)
    assert "The memory check needs two hollow runs" in model.render(medians)
    # A run with 10 s heartbeats sends a fifth of the heartbeats: 1,000 / 10 s x 1 ms = 10 % of a core.
    slow = {**medians, "server CPU idle at 1000 hollow nodes (10 s heartbeat)": 12.0}
    del slow["server CPU idle at 1000 hollow nodes"]
    assert "Check at 1,000 hollow nodes (10 s heartbeat): model 10.0 % of a core idle, measured 12.0 %" in model.render(slow)
    medians |= {"control plane RSS at 100 nodes / 3000 pods": 200.0, "control plane RSS at 1000 nodes / 30000 pods": 1900.0}
    # base = 200 MB - 3000 x 50 KB = 53.5 MB; at 30,000 pods: 53.5 + 1,464.8 = 1,518 MB.
    assert "Memory check at 1,000 nodes / 30,000 pods: model 1,518 MB (the 3,000-pod run + 50 KB per pod)" in model.render(medians)
    assert "measured 1,900 MB" in model.render(medians)
    # With three runs the two smallest give the line: (200 - 100) MB over 2,800 pods = 36.6 KB per pod.
    medians["control plane RSS at 20 nodes / 200 pods"] = 100.0
    assert "model 1,164 MB (a line through the 200- and 3,000-pod runs: 36.6 KB per pod)" in model.render(medians)
    # 1 ms per heartbeat every 10 s plus the pod starts: 0.00015 core per node.
    assert "one server's CPU allows about **6,667 nodes**" in model.render(medians)


@pytest.mark.parametrize(
    ("value", "unit", "target", "verdict"),
    [(5, "ms", "<= 50 ms", "met"), (0.06, "s", "<= 50 ms", "missed"), (600, "pods/s", ">= 500", "met"),
     (0, "count", "<= 0", "met"), (1, "count", "<= 0", "missed"), (3, "s", "", ""), (3, "s", "same run", "")],
)  # fmt: skip
def test_judge(value: float, unit: str, target: str, verdict: str) -> None:
    assert report.judge(value, unit, target) == verdict


def test_empty_results(tmp_path: Path) -> None:
    assert "No results yet." in report.render(report.load(tmp_path / "missing.jsonl"), None)


def test_issue_figures_open_the_report_from_the_most_complete_mode(results: Path) -> None:
    text = report.render(report.load(results), None)
    head = text[text.index("## The figures the benchmark issue asks for"):text.index("## API server")]
    store = table_row(head, "store writes/s (SQLite)")
    # Issue figure | Figure | Mode | Median | ...: the full run's row, not the quick one's.
    assert store[1:4] == ["sqlite writes_sequential", "full", "4,500"]
    assert "quick" not in head.split("store writes/s (SQLite)")[1].split("\n")[1]
    assert table_row(head, "")  # the mutating p50/p99 group continues on label-less rows
    assert "not measured yet: full run only (`kubelite bench hollow hollow-1000`)" in head
    assert "The issue's figures: **2 met, 0 missed**" in text  # churn p99 and the quick hollow failover
    # An area's quick rows fold under the full ones.
    store_area = text[text.index("## Storage drivers"):]
    assert store_area.index("| sqlite writes_sequential | full |") < store_area.index("<details>")
    assert store_area.index("<details>") < store_area.index("| sqlite writes_sequential | quick |")


def test_ratio_of_two_figures_of_the_same_revision(tmp_path: Path) -> None:
    rows = [row("store", "etcd driver writes/s (sequential, same cluster as raw)", v, "writes/s", mode="full") for v in (300, 400)]
    rows += [row("store", "raw etcd writes/s (gateway, sequential)", 1000.0, "writes/s", mode="full")]
    rows += [row("store", "etcd driver writes/s (sequential, same cluster as raw)", 900, "writes/s", mode="quick", git="other00")]
    rows += [row("store", "raw etcd writes/s (gateway, sequential)", 1000.0, "writes/s", mode="quick")]
    text = report.render(report.load(write(tmp_path / "r.jsonl", rows)), None)
    ratio = table_row(text, "etcd driver / raw etcd writes/s")
    assert ratio[1:3] == ["full", "0.35"] and ratio[6] == ">= 0.5" and "missed" in ratio[8]
    assert "| etcd driver / raw etcd writes/s | quick |" not in text  # its quick sides come from different revisions


def test_a_quick_miss_is_listed_only_until_a_full_run_measures_the_figure(tmp_path: Path) -> None:
    rows = [row("api", "LIST of 30000 pods", 3.0, "s", target="<= 2 s", mode="direct", bound="old profile"),
            row("api", "LIST of 400 pods", 3.0, "s", target="<= 2 s", mode="quick", bound="quick profile")]  # fmt: skip
    text = report.render(report.load(write(tmp_path / "a.jsonl", rows)), None)
    assert "- LIST of 30000 pods (direct): old profile" in text and "- LIST of 400 pods (quick)" in text
    rows.append(row("api", "LIST of 30000 pods", 0.5, "s", target="<= 2 s", mode="full"))
    text = report.render(report.load(write(tmp_path / "b.jsonl", rows)), None)
    assert "old profile" not in text and "- LIST of 400 pods (quick): quick profile" in text


def test_headline_pairs_p50_with_p99_and_names_what_untargeted_rows_are(tmp_path: Path) -> None:
    rows = [row("api", "get latency p50 (100 clients)", 10.0, "ms", mode="full"),
            row("api", "get latency p99 (100 clients)", 20.0, "ms", mode="full"),
            row("pod_startup", "raw runc run -d (floor) p99", 0.04, "s", mode="full"),
            row("swarm", "swarm service of 30 replicas: to all running", 8.0, "s", mode="full")]  # fmt: skip
    text = report.render(report.load(write(tmp_path / "r.jsonl", rows)), None)
    head = text[text.index("## The figures the benchmark issue asks for"):text.index("## API server")]
    get = table_row(head, "API p50/p99 per verb under churn")
    assert get[1:4] == ["get latency p50 / p99 (100 clients)", "full", "10.00 / 20.00"]
    assert get[6] == "<= 1000 ms" and "met" in get[8]  # the SLO's p99 judges the row
    assert "| get latency p50 (100 clients) |" not in head
    assert table_row(head, "raw runc start (floor for pod start)")[8] == "floor (anchor)"
    assert "peer (anchor)" in head
    assert "The issue's figures: **1 met, 0 missed**, 2 anchors or sides of a ratio, 0 without a target" in text
