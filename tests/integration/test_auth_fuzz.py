"""Issue #10's fuzz, in CI: generated requests against the authenticated HTTPS port with random
credentials, verbs, paths, headers and bodies. No answer >= 500, wrong or missing credentials get
401, the server stays up, and the seeded objects are byte-identical afterwards (the rules are in
tests/fuzz_strategies.py; bench/fuzz_bench.py runs the same generator for 10,000+ requests)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ServerProcess
from tests.fuzz_strategies import fuzz_server, summary

REQUESTS = 2000  # the full 10,000+ run is bench/fuzz_bench.py


def test_fuzz_with_and_without_credentials(apiserver: ServerProcess, tmp_path: Path) -> None:
    outcome = fuzz_server(apiserver, tmp_path, REQUESTS, derandomize=True)
    report = outcome.report
    print(summary(report), *outcome.notes, sep="\n")

    assert report.requests >= REQUESTS
    assert not report.server_errors, f"{len(report.server_errors)} responses >= 500:\n" + "\n".join(report.server_errors)
    assert not report.violations, f"{len(report.violations)} violations:\n" + "\n".join(report.violations[:60])
    # Every kind of credential was tried, and the TLS layer refused the foreign CA every time.
    assert set(report.by_credential) == set(outcome.credentials)
    assert report.statuses["refused"] == report.by_credential["other-ca"] > 0
    assert report.statuses["401"] > 0 and report.statuses["403"] > 0
    assert not outcome.changes, "the fuzz changed objects it had no right to:\n" + "\n".join(outcome.changes)
    assert outcome.ready, "the server died or is not ready after the fuzz"
