"""Per-container shim (containerd-shim's job): the parent of one container's init process.

runc keeps no exit status: only the parent of a container's init can ``wait()`` for it. The agent
must be free to restart, so it is not that parent; this shim is. It daemonises (its own session,
reparented away from the agent), becomes a child subreaper, runs ``runc create`` with the
container's stdout/stderr on pipes, and so becomes the init's parent when ``runc create`` exits.
It writes the container's output to the log file in the CRI format (``logs.CriLogWriter``),
waits for the init, reads the OOM-kill counter from the still-existing cgroup, and writes
``exit.json`` atomically. The agent only reads files from the state dir:

    shim.pid      the shim's pid              init.pid   the container init's pid (runc --pid-file)
    created       ``runc create`` succeeded   create.err why it failed
    exit.json     {"exitCode", "finishedAt", "oomKilled"} once the init has exited

Usage: ``python shim.py --state-dir S --log L --oom-file F -- runc --root R create --bundle B
--pid-file S/init.pid ID``.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

# Standard library only: the agent runs this file by path, one process per container, and importing
# the kubelite package would add a quarter of a second to every container start.

__all__ = ["main", "oom_kill_count", "write_json_atomic"]

_PR_SET_CHILD_SUBREAPER = 36


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json_atomic(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _load_log_writer() -> type[Any]:
    # logs.py is standard-library only too: load it by path, without the kubelite package.
    name = "kubelite_shim_logs"
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("logs.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    writer: type[Any] = module.CriLogWriter
    return writer


def _copy(src: int, stream: str, writer: Any, lock: threading.Lock) -> None:
    while chunk := os.read(src, 65536):
        with lock:
            writer.write(stream, chunk)
    os.close(src)


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def oom_kill_count(text: str) -> int:
    """The ``oom_kill`` counter of a v1 ``memory.oom_control`` or a v2 ``memory.events`` file."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    return 0


def run(state_dir: Path, log_path: Path, oom_file: Path | None, create_argv: list[str]) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    (state_dir / "shim.pid").write_text(str(os.getpid()))
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    create = subprocess.Popen(create_argv, stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w, close_fds=True)
    os.close(out_w)
    os.close(err_w)  # the container init keeps its own copies
    writer = _load_log_writer()(log_path)  # CRI format, rotated by size
    lock = threading.Lock()
    readers = [
        threading.Thread(target=_copy, args=(fd, name, writer, lock), daemon=True)
        for fd, name in ((out_r, "stdout"), (err_r, "stderr"))
    ]
    for t in readers:
        t.start()
    code = create.wait()
    pid_file = state_dir / "init.pid"
    if code != 0 or not pid_file.exists():
        for t in readers:
            t.join(timeout=2)
        with lock:
            writer.close()
        tail = log_path.read_bytes()[-2000:].decode(errors="replace") if log_path.exists() else ""
        (state_dir / "create.err").write_text(f"runc create exited with {code}: {tail.strip()}")
        return 1
    init_pid = int(pid_file.read_text().strip())
    (state_dir / "created").touch()  # the agent may now `runc start`
    # Reap everything reparented to us; the init's status is the container's exit code.
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            status = -1
            break
        if pid == init_pid:
            break
    for t in readers:
        t.join(timeout=2)  # output written by processes that outlived init is cut off here
    with lock:
        writer.close()
    # The cgroup lives on until `runc delete`: its counter tells an OOM kill from any other SIGKILL.
    try:
        oom = oom_file is not None and oom_kill_count(oom_file.read_text()) > 0
    except (OSError, ValueError):
        oom = False
    exit_code = _exit_code(status) if status >= 0 else 255
    write_json_atomic(state_dir / "exit.json", {"exitCode": exit_code, "finishedAt": _now(), "oomKilled": oom})
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kubelite-shim")
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--log", type=Path, required=True)
    p.add_argument("--oom-file", type=Path, help="the container cgroup's memory.oom_control/memory.events")
    p.add_argument("create_argv", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    create_argv = args.create_argv[1:] if args.create_argv[:1] == ["--"] else args.create_argv
    if not create_argv:
        p.error("missing the runc create command after --")
    # Daemonise: the agent's child returns at once; the grandchild lives on in its own session.
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    sys.stdin.close()
    return run(args.state_dir, args.log, args.oom_file, create_argv)


if __name__ == "__main__":
    sys.exit(main())
