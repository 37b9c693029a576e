"""Issue #10's fuzz at full size: 10,000+ generated requests against the authenticated HTTPS port
(random credentials x verbs x paths x headers x bodies; the generator and the rules are in
tests/fuzz_strategies.py, which tests/integration/test_auth_fuzz.py runs at 2,000 in CI).

Records the requests sent, the responses by status code, the refused connections (a client
certificate from another CA), the responses >= 500, the rule violations (a wrong credential not
answered 401, an error that is no Status, a dropped connection) and the seeded objects changed.
Exits 1 if any of the last three is not 0.

    python bench/fuzz_bench.py [--quick] [--requests 10000] [--seed N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import record
from tests.conftest import start_server  # the bench needs the HTTPS port, tls dir and join token it reports
from tests.fuzz_strategies import fuzz_server, summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="500 requests: checks every figure is produced")
    p.add_argument("--requests", type=int, default=10_000, help="generated requests to send")
    p.add_argument("--derandomize", action="store_true", help="Hypothesis' fixed seed (the CI test's sequence)")
    args = p.parse_args()
    count = 500 if args.quick else args.requests
    with tempfile.TemporaryDirectory(prefix="kubelite-bench-") as tmp:
        server = start_server(Path(tmp) / "srv", extra_args=["--controllers", "", "--log-level", "warning"])
        try:
            outcome = fuzz_server(server, Path(tmp) / "certs", count, derandomize=args.derandomize)
        finally:
            server.stop()
    report, changes = outcome.report, outcome.changes

    print(summary(report), *outcome.notes, sep="\n")
    record("fuzz", "requests sent", report.requests, "requests", credentials=outcome.credentials)
    record("fuzz", "responses", report.responses, "responses")
    for status, n in sorted(report.statuses.items()):
        if status != "refused":
            record("fuzz", f"responses {status}", n, "responses")
    record("fuzz", "connections refused (client cert from another CA)", report.statuses["refused"], "requests")
    record("fuzz", "responses >= 500", len(report.server_errors), "responses", target="0")
    record("fuzz", "rule violations (401, Status, dropped connection)", len(report.violations), "requests", target="0")
    record("fuzz", "seeded objects changed", len(changes), "objects", target="0")
    record("fuzz", "server alive and ready after the fuzz", float(outcome.ready), "bool", target="1")
    record("fuzz", "requests/s", report.requests / outcome.seconds, "req/s")
    for line in [*report.server_errors, *report.violations[:50], *changes]:
        print(line, file=sys.stderr)
    if report.server_errors or report.violations or changes or not outcome.ready:
        sys.exit(1)


if __name__ == "__main__":
    main()
