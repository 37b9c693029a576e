"""`kubelite bench --quick` end to end: every benchmark of the CI subset produces its figures.

The subset is the fastest benches (store, api, scheduler, hollow: about a minute on 2 cores). swarm is
left out here: it needs dockerd and runc and takes about 100 s. Timings are never asserted.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from bench.run import BY_NAME

SUBSET = ["store", "api", "scheduler", "hollow"]


def test_quick_benches_produce_every_figure(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "kubelite", "bench", "--quick", *SUBSET, "--results", str(results)],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert {r["run_id"] for r in rows} and len({r["run_id"] for r in rows}) == 1
    for r in rows:
        assert r["mode"] == "quick" and r["git"] and r["date"] and r["machine"]["cpus"]
        assert isinstance(r["value"], (int, float)) and math.isfinite(r["value"]), r
    for name in SUBSET:
        figures = [r["figure"] for r in rows if r["bench"] == name]
        for expected in BY_NAME[name].expects:
            assert any(expected in f for f in figures), f"{name}: no figure matching {expected!r} in {figures}"
    report = (tmp_path / "RESULTS.md").read_text()
    for area in ("## Storage drivers", "## API server", "## Scheduler", "## Hollow nodes"):
        assert area in report
    assert "control plane RSS at 20 nodes / 200 pods" in report


def test_unknown_benchmark_is_an_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "kubelite", "bench", "no-such-bench", "--results", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 2 and "unknown benchmark" in proc.stderr
    assert not (tmp_path / "r").exists()
