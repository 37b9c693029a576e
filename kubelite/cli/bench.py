"""`kubelite bench [NAME…] [--quick] [--repeat N] [--list]`: the benchmark suite of a source checkout.

The benchmarks live in the checkout's ``bench/`` (not in the installed package): this command runs
``bench/run.py`` in a subprocess, which runs each benchmark script in its own subprocess and
regenerates ``bench/RESULTS.md``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from kubelite.cli.common import fail


def bench_dir() -> Path:
    """``bench/`` next to the package in an editable install or a checkout."""
    return Path(__file__).resolve().parent.parent.parent / "bench"


def bench(
    names: Annotated[list[str] | None, typer.Argument(help="Benchmarks to run (default: all; see --list).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes, one repetition (the CI check).")] = False,
    repeat: Annotated[int | None, typer.Option("--repeat", help="Repetitions per benchmark (default 1 quick, 3 full).")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the benchmarks and exit.")] = False,
    results: Annotated[Path | None, typer.Option("--results", help="JSON lines file to append to.")] = None,
) -> None:
    """Run the benchmark suite and regenerate bench/RESULTS.md (needs a source checkout)."""
    runner = bench_dir() / "run.py"
    if not runner.is_file():
        fail(f"no benchmark suite at {runner.parent}: `kubelite bench` runs from a source checkout")
    argv = [sys.executable, str(runner), *(names or [])]
    if quick:
        argv.append("--quick")
    if repeat is not None:
        argv += ["--repeat", str(repeat)]
    if list_:
        argv.append("--list")
    if results is not None:
        argv += ["--results", str(results)]
    raise typer.Exit(subprocess.call(argv, cwd=runner.parent.parent))
