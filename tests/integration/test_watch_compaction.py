"""A watch from a compacted resourceVersion gets an ERROR event carrying a 410 Status."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import ServerProcess, start_server

CM = "/api/v1/namespaces/default/configmaps"


@pytest.fixture
def compacting_server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_server(tmp_path, extra_args=["--compaction-interval", "0.2", "--compaction-retain", "2"])
    yield server
    server.stop()


def test_compacted_resource_version_gets_410(compacting_server: ServerProcess) -> None:
    with httpx.Client(base_url=compacting_server.url, timeout=10) as http:
        first = http.post(CM, json={"metadata": {"name": "c"}, "data": {"i": "0"}}).json()
        old_rv = first["metadata"]["resourceVersion"]
        for i in range(1, 10):
            assert http.patch(
                f"{CM}/c", json={"data": {"i": str(i)}}, headers={"Content-Type": "application/merge-patch+json"}
            ).status_code == 200
        time.sleep(1.0)  # several compaction rounds
        with http.stream("GET", CM, params={"watch": "true", "resourceVersion": old_rv, "timeoutSeconds": "2"}) as resp:
            assert resp.status_code == 200
            lines = [orjson.loads(line) for line in resp.iter_lines() if line]
        assert lines and lines[0]["type"] == "ERROR", lines
        assert lines[0]["object"]["code"] == 410 and lines[0]["object"]["kind"] == "Status"
        # A watch from the current revision still works.
        current = http.get(CM).json()["metadata"]["resourceVersion"]
        with http.stream("GET", CM, params={"watch": "true", "resourceVersion": current, "timeoutSeconds": "1"}) as resp:
            assert resp.status_code == 200
            assert [line for line in resp.iter_lines() if line] == []
