"""The fake runtime, and re-adoption of a runtime's containers by a restarted agent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubelite.agent.pods import PodManager
from kubelite.agent.runtime import ContainerState, RuntimeOptions
from kubelite.agent.runtimes import UnknownRuntimeError, create_runtime
from kubelite.agent.runtimes.fake import FakeRuntime, fake_pod_cidr
from kubelite.client import ApiClient


def _pod(uid: str, name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": uid},
        "spec": {"initContainers": [{"name": "init", "image": "busybox"}],
                 "containers": [{"name": "app", "image": "nginx"}]},
    }


def _runtime(index: int = 0) -> FakeRuntime:
    return FakeRuntime(RuntimeOptions(node_name=f"n{index}", data_dir=Path("/nonexistent"), node_index=index))


def test_runtime_registry() -> None:
    opts = RuntimeOptions(node_name="n", data_dir=Path("/nonexistent"))
    assert isinstance(create_runtime("fake", opts), FakeRuntime)
    with pytest.raises(UnknownRuntimeError, match=r"^unknown runtime 'podman'"):
        create_runtime("podman", opts)


def test_fake_pod_ranges_differ_per_node() -> None:
    assert fake_pod_cidr(0) == "100.64.0.0/22"
    assert fake_pod_cidr(1) == "100.64.4.0/22"
    assert len({fake_pod_cidr(i) for i in range(1024)}) == 1024


async def test_fake_containers_run_until_stopped_and_init_containers_complete() -> None:
    rt = _runtime(3)
    pod = _pod("u1", "p")
    sb = await rt.run_pod_sandbox(pod)
    assert sb.ip is not None and sb.ip.startswith("100.64.12.")
    init = await rt.create_container(sb.id, pod, pod["spec"]["initContainers"][0], 0, {}, [])
    app = await rt.create_container(sb.id, pod, pod["spec"]["containers"][0], 0, {}, [])
    assert (await rt.container_status(app)).state is ContainerState.CREATED
    await rt.start_container(init)
    await rt.start_container(app)
    init_st, app_st = await rt.container_status(init), await rt.container_status(app)
    assert init_st.state is ContainerState.EXITED and init_st.exit_code == 0
    assert app_st.state is ContainerState.RUNNING and app_st.started_at
    await rt.stop_container(app, 0)
    assert (await rt.container_status(app)).exit_code == 137
    labels = {c.container_name: c for c in await rt.list_containers()}
    assert labels["app"].pod_uid == "u1" and labels["app"].attempt == 0
    await rt.stop_pod_sandbox(sb.id)
    await rt.remove_pod_sandbox(sb.id)
    assert await rt.list_containers() == [] and await rt.list_pod_sandboxes() == []
    again = await rt.run_pod_sandbox(pod)
    assert again.ip == sb.ip  # released with the sandbox


async def test_restarted_agent_readopts_and_removes_orphans() -> None:
    rt = _runtime()
    kept, gone = _pod("u1", "kept"), _pod("u2", "gone")
    ids: dict[str, str] = {}
    for pod in (kept, gone):
        sb = await rt.run_pod_sandbox(pod)
        old = await rt.create_container(sb.id, pod, pod["spec"]["containers"][0], 0, {}, [])
        cid = await rt.create_container(sb.id, pod, pod["spec"]["containers"][0], 1, {}, [])
        await rt.start_container(cid)
        ids[pod["metadata"]["name"]] = cid
        ids[pod["metadata"]["name"] + "-old"] = old
    # A fresh manager (the agent restarted) knows only that "kept" is still bound here.
    client = ApiClient("http://127.0.0.1:1")  # adoption talks to the runtime only
    manager = PodManager(client, rt, "n0", "10.0.0.1")
    await manager.adopt([kept])
    rec = manager.record("default/kept")
    assert rec is not None and rec.containers["app"].container_id == ids["kept"]
    assert rec.containers["app"].restart_count == 1
    assert manager.record("default/gone") is None
    assert [c.id for c in await rt.list_containers()] == [ids["kept"]]  # no orphan, no older attempt
    assert len(await rt.list_pod_sandboxes()) == 1
    await client.close()
