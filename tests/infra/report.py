"""The suite's readable summary: pass/fail per check (with the failure's first line) and the figures.

Checks record figures (failover time, errors through the Service, ...) with the ``figure`` fixture;
they are printed at the end of the run, written to a text file (``--infra-report``) and, as
testsuite properties, into the JUnit XML that ``--junitxml`` writes for CI systems.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["InfraReport"]


@dataclass
class _Check:
    nodeid: str
    outcome: str = "passed"
    detail: str = ""


@dataclass
class InfraReport:
    cluster: str
    path: Path | None
    checks: dict[str, _Check] = field(default_factory=dict)
    figures: list[tuple[str, str]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def record(self, name: str, value: str) -> None:
        self.figures.append((name, value))

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        check = self.checks.setdefault(report.nodeid, _Check(report.nodeid))
        if report.failed and check.outcome != "failed":
            check.outcome = "failed" if report.when == "call" else f"error ({report.when})"
            crash = getattr(report.longrepr, "reprcrash", None)
            check.detail = (crash.message if crash is not None else str(report.longrepr)).strip()
        elif report.skipped and check.outcome == "passed":
            check.outcome = "skipped"
            longrepr = report.longrepr
            check.detail = str(longrepr[2] if isinstance(longrepr, tuple) else longrepr)

    def render(self) -> str:
        wall = time.monotonic() - self.started
        counts: dict[str, int] = {}
        lines = [f"kubelite infrastructure report: cluster {self.cluster}", ""]
        for check in self.checks.values():
            status = check.outcome.split(" ")[0]
            counts[status] = counts.get(status, 0) + 1
            mark = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP", "error": "FAIL"}[status]
            name = check.nodeid.split("tests/infra/", 1)[-1]
            first = check.detail.splitlines()[0] if check.detail else ""
            lines.append(f"  {mark}  {name}" + (f"\n          {first[:300]}" if mark != "PASS" and first else ""))
        if self.figures:
            lines += ["", "figures:"]
            lines += [f"  {name}: {value}" for name, value in self.figures]
        lines += ["", ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + f"; wall time {wall:.1f} s"]
        return "\n".join(lines) + "\n"

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        text = self.render()
        terminalreporter.write_sep("=", "kubelite infrastructure report")
        terminalreporter.write(text)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(text)
            terminalreporter.write_line(f"report written to {self.path}")
