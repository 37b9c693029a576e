"""bench/run.py: which invocations a full or quick run makes, and benches without a quick mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import run


def test_heavy_invocations_run_in_the_first_repetition_only() -> None:
    bench = run.Bench("b", "b.py", "about", quick=[["--quick"]], full=[[]], full_once=[["--nodes", "5000"]])
    assert bench.invocations(quick=False, repetition=0) == [[], ["--nodes", "5000"]]
    assert bench.invocations(quick=False, repetition=1) == [[]]
    assert bench.invocations(quick=True, repetition=0) == [["--quick"]]


def test_issue_shapes_are_in_the_full_run() -> None:
    """The figures issue #11 asks for need these invocations in the default full run."""
    by = run.BY_NAME
    full = {name: [a for r in range(by[name].repeat) for a in by[name].invocations(False, r)] for name in run.DEFAULT}
    # scheduler_perf's shape (the script's defaults: 500 nodes, 500 existing + 1,000 measured pods), and 5,000 nodes.
    assert [] in full["scheduler"]
    assert any(a[:2] == ["--nodes", "5000"] for a in full["scheduler"])
    assert any(a[:4] == ["--nodes", "100", "--pods", "3000"] for a in full["hollow"])
    assert any(a[:4] == ["--nodes", "1000", "--pods", "30000"] for a in full["hollow-1000"])
    assert run.BY_NAME["hollow-1000"].quick == []  # the quick run (CI) has its own, smaller hollow shape
    assert ["--etcd"] in full["store"]
    assert "cluster" in run.DEFAULT and "cluster-libvirt" not in run.DEFAULT
    assert by["cluster-libvirt"].full == [["--provider", "libvirt"]]


def test_quick_skips_a_bench_without_quick_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "marker.py"
    # Would leave a file behind if the harness ran it.
    script.write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    bench = run.Bench("fullonly", str(script), "about", quick=[], full=[[]], repeat=1)
    monkeypatch.setitem(run.BY_NAME, "fullonly", bench)
    failures, produced = run.run(["fullonly"], quick=True, repeat=None, results=tmp_path / "r.jsonl")
    assert failures == [] and produced == {"fullonly": []}
    assert not (tmp_path / "ran").exists()


def test_full_run_tags_rows_by_repetition(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "emit.py"
    script.write_text(
        "import json, os, sys\n"
        "with open(os.environ['KUBELITE_BENCH_RESULTS'], 'a') as f:\n"
        "    f.write(json.dumps({'bench': 'x', 'figure': 'f ' + ' '.join(sys.argv[1:]), 'value': 1}) + '\\n')\n"
    )
    bench = run.Bench("emit", str(script), "about", quick=[], full=[["a"]], full_once=[["heavy"]], repeat=2)
    monkeypatch.setitem(run.BY_NAME, "emit", bench)
    results = tmp_path / "r.jsonl"
    failures, _ = run.run(["emit"], quick=False, repeat=None, results=results)
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert failures == []
    assert sorted((r["figure"], r["repeat"]) for r in rows) == [("f a", 0), ("f a", 1), ("f heavy", 0)]
    assert {r["mode"] for r in rows} == {"full"}


def test_list_marks_benches_run_only_when_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert run.main(["--list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "only when named" in lines["cluster-libvirt"] and "only when named" not in lines["cluster"]
