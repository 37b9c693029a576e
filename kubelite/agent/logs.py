"""Container log files: where they live, how they are written and rotated, how they are read back.

Layout (kubelet's): ``<data dir>/logs/<namespace>_<pod>_<uid>/<container>/<restartCount>.log``, so
the previous attempt's output stays readable (``previous=true``) after a restart. Rotated files
sit beside the live one as ``<restartCount>.log.<UTC timestamp>`` (sortable by name).

Format (the CRI log format every Kubernetes runtime writes), one record per line::

    2016-10-06T00:17:09.669794202Z stdout F message
    2016-10-06T00:17:09.669794203Z stderr P a long line's first part

``F`` ends a line, ``P`` is a partial line continued by the next record of the same stream.

Writing is synchronous and self-contained (:class:`CriLogWriter`), so a runtime's shim process can
use it without the agent; rotation is size-based (``max_bytes`` times ``max_files``, kubelet's
``containerLogMaxSize``/``containerLogMaxFiles``) and done by the writer itself, between records.
Reading (:func:`read_log`) implements the ``pods/log`` options: tailLines, sinceSeconds/sinceTime,
timestamps, limitBytes and follow (until the container stops running).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_FILES",
    "CriLogWriter",
    "LogLine",
    "LogOptions",
    "container_log_dir",
    "container_log_path",
    "log_files",
    "parse_cri_line",
    "pod_log_dir",
    "read_log",
]

Obj = dict[str, Any]

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_FILES = 5
_MAX_PARTIAL = 16 * 1024  # a line longer than this is split into P records (containerd's buffer size)


def pod_log_dir(data_dir: Path, namespace: str, name: str, uid: str) -> Path:
    return data_dir / "logs" / f"{namespace}_{name}_{uid}"


def container_log_dir(data_dir: Path, pod: Obj, container: str) -> Path:
    m = pod.get("metadata") or {}
    return pod_log_dir(data_dir, str(m.get("namespace", "")), str(m.get("name", "")), str(m.get("uid", ""))) / container


def container_log_path(data_dir: Path, pod: Obj, container: str, restart_count: int) -> Path:
    return container_log_dir(data_dir, pod, container) / f"{restart_count}.log"


def _timestamp(now: float | None = None) -> str:
    # RFC 3339 with nanoseconds, as CRI runtimes write it.
    ns = time.time_ns() if now is None else int(now * 1e9)
    secs, frac = divmod(ns, 1_000_000_000)
    return dt.datetime.fromtimestamp(secs, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


class CriLogWriter:
    """Writes one container attempt's output to ``path`` in CRI format, rotating by size.

    ``write()`` takes raw output chunks; complete lines become ``F`` records and a line still open
    is held until it ends (or grows past 16 KiB, then it is flushed as ``P`` records).
    """

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES, max_files: int = DEFAULT_MAX_FILES,
                 clock: Callable[[], float] = time.time) -> None:
        if max_files < 1:
            raise ValueError("max_files must be at least 1")
        self.path, self.max_bytes, self.max_files, self.clock = path, max_bytes, max_files, clock
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f: IO[bytes] = open(path, "ab")
        self._pending: dict[str, bytes] = {}

    def write(self, stream: str, data: bytes) -> None:
        buf = self._pending.pop(stream, b"") + data
        *lines, rest = buf.split(b"\n")
        for line in lines:
            while len(line) > _MAX_PARTIAL:
                self._record(stream, "P", line[:_MAX_PARTIAL])
                line = line[_MAX_PARTIAL:]
            self._record(stream, "F", line)
        while len(rest) > _MAX_PARTIAL:
            self._record(stream, "P", rest[:_MAX_PARTIAL])
            rest = rest[_MAX_PARTIAL:]
        if rest:
            self._pending[stream] = rest
        self._f.flush()

    def _record(self, stream: str, tag: str, msg: bytes) -> None:
        rec = f"{_timestamp(self.clock())} {stream} {tag} ".encode() + msg + b"\n"
        size = self._f.tell()
        if size and size + len(rec) > self.max_bytes:
            self._rotate()
        self._f.write(rec)

    def _rotate(self) -> None:
        self._f.close()
        stamp = dt.datetime.fromtimestamp(self.clock(), dt.UTC).strftime("%Y%m%d-%H%M%S.%f")
        target = self.path.with_name(f"{self.path.name}.{stamp}")
        n = 0
        while target.exists():  # two rotations in one microsecond (tiny max_bytes in tests)
            n += 1
            target = self.path.with_name(f"{self.path.name}.{stamp}-{n:04d}")
        os.replace(self.path, target)
        rotated = log_files(self.path)  # the live file is renamed away: all of these are rotated
        for old in rotated[: max(0, len(rotated) - (self.max_files - 1))]:
            old.unlink(missing_ok=True)
        self._f = open(self.path, "ab")

    def close(self) -> None:
        for stream, rest in self._pending.items():
            self._record(stream, "F", rest)
        self._pending.clear()
        self._f.close()

    def __enter__(self) -> CriLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def log_files(path: Path) -> list[Path]:
    """The rotated files of ``path`` oldest first, then ``path`` itself if it exists."""
    rotated = sorted(p for p in path.parent.glob(f"{path.name}.*") if p.is_file())
    return [*rotated, *([path] if path.exists() else [])]


# --- reading ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogLine:
    timestamp: str
    stream: str
    partial: bool
    message: bytes


def parse_cri_line(line: bytes) -> LogLine | None:
    """One CRI record (without its newline); None for a malformed one."""
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        return None
    ts, stream, tag = parts[0].decode(errors="replace"), parts[1].decode(errors="replace"), parts[2]
    return LogLine(ts, stream, tag == b"P", parts[3] if len(parts) > 3 else b"")


def _parse_ts(ts: str) -> dt.datetime | None:
    # Python's fromisoformat takes at most microseconds: cut the nanoseconds.
    try:
        main, _, frac = ts.rstrip("Z").partition(".")
        return dt.datetime.fromisoformat(main + ("." + frac[:6] if frac else "")).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class LogOptions:
    """The ``pods/log`` query options the agent honours (``container`` and ``previous`` pick the file)."""

    follow: bool = False
    tail_lines: int | None = None
    timestamps: bool = False
    since_seconds: int | None = None
    since_time: str | None = None
    limit_bytes: int | None = None

    def since(self, now: dt.datetime | None = None) -> dt.datetime | None:
        if self.since_seconds is not None:
            return (now or dt.datetime.now(dt.UTC)) - dt.timedelta(seconds=self.since_seconds)
        if self.since_time:
            return _parse_ts(self.since_time)
        return None


class _Assembler:
    """Turns records into whole lines (P records joined to what follows on the same stream)."""

    def __init__(self, opts: LogOptions) -> None:
        self.opts = opts
        self.since = opts.since()
        self._parts: dict[str, list[bytes]] = {}

    def feed(self, raw: bytes) -> bytes | None:
        rec = parse_cri_line(raw)
        if rec is None:
            return None
        if rec.partial:
            self._parts.setdefault(rec.stream, []).append(rec.message)
            return None
        msg = b"".join(self._parts.pop(rec.stream, [])) + rec.message
        if self.since is not None:
            t = _parse_ts(rec.timestamp)
            if t is not None and t < self.since:
                return None
        prefix = (rec.timestamp + " ").encode() if self.opts.timestamps else b""
        return prefix + msg + b"\n"


class _Limiter:
    def __init__(self, limit: int | None) -> None:
        self.left = limit

    def cut(self, chunk: bytes) -> bytes:
        if self.left is None:
            return chunk
        chunk = chunk[: self.left]
        self.left -= len(chunk)
        return chunk

    @property
    def done(self) -> bool:
        return self.left is not None and self.left <= 0


class _Follower:
    """Reads a log file's new bytes, following it across rotations (a new inode at the same path)."""

    def __init__(self, path: Path) -> None:
        self.path, self.inode, self.offset = path, 0, 0

    def initial(self) -> bytes:
        """Everything in the rotated files and the live one; later reads continue from here."""
        data = b""
        for f in log_files(self.path):
            with open(f, "rb") as fh:
                chunk = fh.read()
                if f == self.path:
                    self.inode, self.offset = os.fstat(fh.fileno()).st_ino, len(chunk)
            data += chunk
        return data

    def read_new(self) -> bytes:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return b""
        data = b""
        if st.st_ino != self.inode:
            # Rotated: finish the old file (now renamed), then the new one from its beginning.
            old = next((p for p in log_files(self.path)[:-1] if p.stat().st_ino == self.inode), None)
            if old is not None:
                data = _read_from(old, self.offset)
            self.inode, self.offset = st.st_ino, 0
        new = _read_from(self.path, self.offset)
        self.offset += len(new)
        return data + new


def _read_from(path: Path, offset: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read()


async def read_log(
    path: Path,
    opts: LogOptions,
    running: Callable[[], Awaitable[bool]] | None = None,
    poll_interval: float = 0.2,
) -> AsyncIterator[bytes]:
    """The log of one container attempt (``path`` and its rotated files), as ``pods/log`` returns it.

    With ``follow`` the stream continues while ``running()`` is true, picking up rotations; it
    ends once the container stopped and everything written has been sent.
    """
    asm = _Assembler(opts)
    limit = _Limiter(opts.limit_bytes)
    follower = _Follower(path)
    raw_all = follower.initial()
    *records, tail = raw_all.split(b"\n")
    lines = [out for out in map(asm.feed, records) if out is not None]
    if opts.tail_lines is not None:
        lines = lines[-opts.tail_lines :] if opts.tail_lines > 0 else []
    for line in lines:
        chunk = limit.cut(line)
        if chunk:
            yield chunk
        if limit.done:
            return
    if not opts.follow or running is None:
        return
    while True:
        alive = await running()  # asked before reading, so nothing written before it stopped is lost
        data = follower.read_new()
        if data:
            *records, tail = (tail + data).split(b"\n")
            for raw in records:
                out = asm.feed(raw)
                if out is None:
                    continue
                chunk = limit.cut(out)
                if chunk:
                    yield chunk
                if limit.done:
                    return
            continue  # there may be more already: read again before sleeping
        if not alive:
            return
        await asyncio.sleep(poll_interval)
