"""SqliteStore durability: acknowledged writes survive SIGKILL, and state survives reopen."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kubelite.storage import KeyValue
from kubelite.storage.sqlite import SqliteStore

# Several concurrent writers so kills land inside group commits of many writes; a writer prints a
# key only after its create() returned, i.e. after the commit was acknowledged.
WRITER = """
import asyncio, sys
from kubelite.storage.sqlite import SqliteStore

async def main(path, tag):
    store = SqliteStore("sqlite://" + path, path)
    await store.start()

    async def writer(w):
        i = 0
        while True:
            key = f"/d/{tag}/{w}/{i}"
            rev = await store.create(key, key.encode())
            if i:
                prev = f"/d/{tag}/{w}/{i - 1}"
                cur = await store.get(prev)
                await store.update(prev, b"updated", cur.mod_revision)
            print(key, rev, flush=True)
            i += 1

    await asyncio.gather(*(writer(w) for w in range(8)))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def write_until_killed(script: Path, db: Path, tag: str, acks: int) -> list[tuple[str, int]]:
    """Run the writer, SIGKILL it after ``acks`` acknowledgements; return every acknowledged write."""
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db), tag],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    try:
        while len(lines) < acks:
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"writer exited early: {proc.stderr.read()}")
            lines.append(line)
            assert time.monotonic() < deadline, "writer too slow"
        os.kill(proc.pid, signal.SIGKILL)
        # Lines already in the pipe were acknowledged before the kill too.
        lines += proc.stdout.readlines()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    acked = []
    for line in lines:
        if not line.endswith("\n"):
            continue  # killed mid-print: half a line is not an acknowledgement we can parse
        key, rev = line.split()
        acked.append((key, int(rev)))
    return acked


async def verify(db: Path, acked: list[tuple[str, int]]) -> int:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        (max_id,) = conn.execute("SELECT MAX(id) FROM kv").fetchone()
        ids = [i for (i,) in conn.execute("SELECT id FROM kv ORDER BY id")]
    finally:
        conn.close()
    # No compaction ran, so history is gap-free: every revision 1..max has its row.
    assert ids == list(range(1, max_id + 1))
    store = SqliteStore(f"sqlite://{db}", str(db))
    await store.start()
    try:
        assert await store.current_revision() == max_id
        assert max_id >= max(rev for _, rev in acked)
        for key, rev in acked:
            assert await store.get(key, rev) == KeyValue(key, key.encode(), rev, rev), key
            assert await store.get(key) is not None, key
        new = await store.create(f"/after/kill/{max_id}", b"x")
        assert new == max_id + 1
        return new
    finally:
        await store.close()


@pytest.mark.slow
def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    db = tmp_path / "nested" / "dir" / "state.db"  # parent dirs are created by the store
    acked = write_until_killed(script, db, "one", acks=400)
    assert len(acked) >= 400
    after_first = asyncio.run(verify(db, acked))
    # A second life continues the revision sequence and survives a second kill.
    acked2 = write_until_killed(script, db, "two", acks=200)
    assert min(rev for _, rev in acked2) > after_first
    asyncio.run(verify(db, acked + acked2))


async def test_state_survives_clean_reopen(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = SqliteStore(f"sqlite://{db}", str(db))
    await store.start()
    r1 = await store.create("/k/a", b"a1")
    await store.update("/k/a", b"a2", r1)
    lease = await store.grant_lease(1)
    await store.create("/k/leased", b"l", lease=lease)
    await store.compact(r1 + 1)
    _, _ = await store.delete("/k/a")
    r_last = await store.current_revision()
    await store.close()

    store = SqliteStore(f"sqlite://{db}", str(db))
    await store.start()
    try:
        assert await store.current_revision() == r_last
        assert await store.compact_revision() == r1 + 1
        assert await store.get("/k/a") is None
        assert (await store.get("/k/a", r1 + 1)) == KeyValue("/k/a", b"a2", r1, r1 + 1)
        # The lease was persisted: it expires (after a fresh TTL) and deletes its key.
        watch = await store.watch("/k/", r_last)
        async with asyncio.timeout(5):
            events = await anext(watch)
        assert [(e.type.value, e.kv.key) for e in events] == [("DELETE", "/k/leased")]
        await watch.close()
    finally:
        await store.close()
