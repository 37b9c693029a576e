#!/usr/bin/env bash
# The whole test suite: lint, types, unit and integration tests (starts its own servers).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check kubelite tests bench
.venv/bin/mypy
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
