"""SIGKILL the server in the middle of a stream of acknowledged writes: every acknowledged write survives."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx

from tests.conftest import start_server

CM = "/api/v1/namespaces/default/configmaps"


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    acknowledged: dict[str, int] = {}  # name -> resourceVersion the server acknowledged
    lock = threading.Lock()
    stop = threading.Event()

    def writer(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=5) as http:
            i = 0
            while not stop.is_set():
                name = f"w{worker}-{i}"
                try:
                    resp = http.post(CM, json={"metadata": {"name": name}, "data": {"i": str(i)}})
                except httpx.HTTPError:
                    return  # the server died under us: this write was never acknowledged
                if resp.status_code == 201:
                    with lock:
                        acknowledged[name] = int(resp.json()["metadata"]["resourceVersion"])
                i += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    server.stop(signal.SIGKILL)  # mid-stream: writers are still sending
    stop.set()
    for t in threads:
        t.join()
    assert len(acknowledged) > 50, "the writers did not get going"

    restarted = start_server(tmp_path, port=server.port)
    try:
        with httpx.Client(base_url=restarted.url, timeout=10) as http:
            listed = http.get(CM).json()
            stored = {item["metadata"]["name"]: item for item in listed["items"]}
            missing = sorted(set(acknowledged) - set(stored))
            assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
            for name, rv in acknowledged.items():
                assert int(stored[name]["metadata"]["resourceVersion"]) == rv
            # Consistent: the revision continues above everything stored, and paging sees every item once.
            list_rv = int(listed["metadata"]["resourceVersion"])
            assert list_rv >= max(acknowledged.values())
            new = http.post(CM, json={"metadata": {"name": "after-restart"}}).json()
            assert int(new["metadata"]["resourceVersion"]) > list_rv
            names: list[str] = []
            params: dict[str, str | int] = {"limit": 37}
            while True:
                page = http.get(CM, params=params).json()
                names += [i["metadata"]["name"] for i in page["items"]]
                token = page["metadata"].get("continue")
                if not token:
                    break
                params = {"limit": 37, "continue": token}
            assert len(names) == len(set(names)) == len(stored) + 1
    finally:
        restarted.stop()
