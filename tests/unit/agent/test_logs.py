"""Container log files: CRI format, size rotation, and the pods/log read options."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from kubelite.agent.logs import CriLogWriter, LogOptions, log_files, parse_cri_line, read_log


async def collect(path: Path, opts: LogOptions) -> bytes:
    return b"".join([c async for c in read_log(path, opts)])


def test_cri_format_and_partial_lines(tmp_path: Path) -> None:
    path = tmp_path / "c" / "0.log"
    with CriLogWriter(path) as w:
        w.write("stdout", b"hello\nwor")
        w.write("stderr", b"oops\n")
        w.write("stdout", b"ld\n")
    records = [parse_cri_line(line) for line in path.read_bytes().splitlines()]
    assert [(r.stream, r.partial, r.message) for r in records if r] == [
        ("stdout", False, b"hello"), ("stderr", False, b"oops"), ("stdout", False, b"world")]
    ts = records[0].timestamp if records[0] else ""
    assert ts.endswith("Z") and len(ts.split(".")[1]) == 10  # nanoseconds + Z


async def test_long_line_is_split_into_partials_and_joined_on_read(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    long = b"x" * 40000
    with CriLogWriter(path) as w:
        w.write("stdout", long + b"\n")
    tags = [line.split(b" ")[2] for line in path.read_bytes().splitlines()]
    assert tags == [b"P", b"P", b"F"]
    assert await collect(path, LogOptions()) == long + b"\n"


async def test_rotation_keeps_max_files_and_reads_across_them(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    with CriLogWriter(path, max_bytes=200, max_files=3) as w:
        for i in range(40):
            w.write("stdout", f"line {i:02d}\n".encode())
    files = log_files(path)
    assert len(files) == 3 and files[-1] == path
    assert all(f.stat().st_size <= 200 for f in files)
    out = (await collect(path, LogOptions())).decode().splitlines()
    assert out[-1] == "line 39" and out == sorted(out)  # oldest rotated files dropped, order kept
    assert "line 00" not in out


async def test_tail_timestamps_limit_since(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    now = dt.datetime.now(dt.UTC).timestamp()
    clock = iter([now - 3600, now - 3600, now - 10, now - 5])
    with CriLogWriter(path, clock=lambda: next(clock)) as w:
        for word in ("old1", "old2", "new1", "new2"):
            w.write("stdout", word.encode() + b"\n")
    assert await collect(path, LogOptions(tail_lines=2)) == b"new1\nnew2\n"
    assert await collect(path, LogOptions(tail_lines=0)) == b""
    assert await collect(path, LogOptions(since_seconds=60)) == b"new1\nnew2\n"
    assert await collect(path, LogOptions(limit_bytes=7)) == b"old1\nol"
    stamped = (await collect(path, LogOptions(tail_lines=1, timestamps=True))).decode()
    ts, msg = stamped.rstrip("\n").split(" ", 1)
    assert msg == "new2" and ts.startswith(dt.datetime.fromtimestamp(now - 5, dt.UTC).strftime("%Y-%m-%dT%H:%M"))


async def test_follow_streams_new_lines_across_rotation_until_stopped(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    w = CriLogWriter(path, max_bytes=120, max_files=5)
    w.write("stdout", b"first\n")
    running = True

    async def alive() -> bool:
        return running

    got: list[bytes] = []

    async def follow() -> None:
        async for chunk in read_log(path, LogOptions(follow=True), alive, poll_interval=0.02):
            got.append(chunk)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.1)
    for i in range(6):  # enough to rotate a few times
        w.write("stdout", f"more {i}\n".encode())
        await asyncio.sleep(0.03)
    w.close()
    running = False
    await asyncio.wait_for(task, 5)
    assert b"".join(got).decode().splitlines() == ["first", *[f"more {i}" for i in range(6)]]
    assert len(log_files(path)) > 1
