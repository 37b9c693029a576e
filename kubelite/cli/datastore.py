"""`kubelite datastore export|import`: move a cluster's state between datastores (e.g. SQLite -> etcd).

The snapshot is every key under ``/registry/`` at one revision, as JSON lines: a header line
``{"kubeliteDatastoreSnapshot": 1, "revision": N, "keys": K}`` then ``{"key": ..., "value": ...}``
per key (``valueBase64`` instead of ``value`` for bytes that are not UTF-8). Values are copied
verbatim, so objects keep their UIDs, timestamps and owner references; resourceVersions are the
target store's revisions, as after any etcd restore. Stop the servers on the source first so the
snapshot is the last state; keys bound to a store lease are imported without it.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from kubelite.cli.common import fail, run

PREFIX = "/registry/"
PAGE = 1000
FORMAT_KEY = "kubeliteDatastoreSnapshot"

app = typer.Typer(name="datastore", help="Export or import the cluster state (all keys under /registry).")

EndpointOpt = Annotated[
    str, typer.Option("--datastore-endpoint", envvar="KUBELITE_DATASTORE_ENDPOINT", help="sqlite:///path or etcd://host:port,...")
]


def _line(key: str, value: bytes) -> str:
    try:
        record: dict[str, Any] = {"key": key, "value": value.decode("utf-8")}
    except UnicodeDecodeError:
        record = {"key": key, "valueBase64": base64.b64encode(value).decode("ascii")}
    return json.dumps(record, separators=(",", ":"))


def _value(record: dict[str, Any]) -> bytes:
    if "value" in record:
        return str(record["value"]).encode("utf-8")
    return base64.b64decode(record["valueBase64"])


@app.command("export")
def export(
    datastore_endpoint: EndpointOpt,
    output: Annotated[Path, typer.Option("--output", "-o", help="Snapshot file to write")],
) -> None:
    """Write every key under /registry (read at one revision) to a JSON-lines snapshot."""
    from kubelite.storage import open_store

    async def body() -> int:
        store = open_store(datastore_endpoint)
        await store.start()
        try:
            revision, after, lines = 0, "", []
            while True:
                page = await store.range(PREFIX, revision=revision, limit=PAGE, start_after=after)
                revision = page.revision  # every page at the first page's revision: one snapshot
                lines += [_line(kv.key, kv.value) for kv in page.kvs]
                if not page.more:
                    break
                after = page.kvs[-1].key
        finally:
            await store.close()
        header = json.dumps({FORMAT_KEY: 1, "revision": revision, "keys": len(lines)})
        tmp = output.with_name(output.name + ".tmp")
        tmp.write_text("\n".join([header, *lines]) + "\n")
        tmp.replace(output)  # never leave a half-written snapshot under the real name
        typer.echo(f"exported {len(lines)} keys at revision {revision} to {output}")
        return 0

    run(body)


def _read_snapshot(path: Path) -> list[dict[str, Any]]:
    try:
        raw = path.read_text().splitlines()
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror}")
    try:
        header = json.loads(raw[0]) if raw else {}
        records = [json.loads(line) for line in raw[1:] if line.strip()]
    except ValueError as e:
        fail(f"{path} is not a kubelite datastore snapshot: {e}")
    if header.get(FORMAT_KEY) != 1 or header.get("keys") != len(records):
        fail(f"{path} is not a complete kubelite datastore snapshot (header {raw[0][:100] if raw else ''!r})")
    if not all(isinstance(r, dict) and str(r.get("key", "")).startswith(PREFIX) for r in records):
        fail(f"{path} has a record without a key under {PREFIX}")
    return records


@app.command("import")
def import_(
    datastore_endpoint: EndpointOpt,
    input_: Annotated[Path, typer.Option("--input", "-i", help="Snapshot file written by `datastore export`")],
    force: Annotated[bool, typer.Option("--force", help="Import into a datastore that already has keys (overwriting them)")] = False,
) -> None:
    """Load a snapshot into a datastore; refuses a non-empty one unless --force."""
    from kubelite.storage import KeyExistsError, open_store

    records = _read_snapshot(input_)

    async def body() -> int:
        store = open_store(datastore_endpoint)
        await store.start()
        try:
            existing = await store.range(PREFIX, limit=1)
            if existing.kvs and not force:
                fail(f"{datastore_endpoint} already holds {existing.count} keys under {PREFIX} (use --force to overwrite)")
            for record in records:
                key, value = str(record["key"]), _value(record)
                try:
                    await store.create(key, value)
                except KeyExistsError:
                    await store.update(key, value, 0)
        finally:
            await store.close()
        typer.echo(f"imported {len(records)} keys into {datastore_endpoint}")
        return 0

    run(body)
