"""The Deployment controller (with the ReplicaSet controller) against a real in-process API server.

No node agent runs here: the tests write the pod status an agent would (Running, Ready=True)
through pods/{name}/status, either for every pod as it appears (``auto_ready``) or one pod at a
time where a test steps a rollout by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubelite.client import ApiClient
from kubelite.controllers import deployment_util as du
from kubelite.controllers.base import DEPLOYMENTS, EVENTS, PODS, REPLICASETS
from tests.helpers import eventually, running_controllers

Obj = dict[str, Any]
NS = "default"
REVISION = "deployment.kubernetes.io/revision"


def deployment(
    name: str, replicas: int, image: str = "nginx:1", strategy: Obj | None = None, **spec: Any
) -> Obj:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "strategy": strategy or {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
            **spec,
        },
    }


def is_ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions") or []
    )


async def active_pods(client: ApiClient, selector: str) -> list[Obj]:
    items = (await client.list(PODS, namespace=NS, label_selector=selector))["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


async def owned_rss(client: ApiClient, name: str) -> list[Obj]:
    items = (await client.list(REPLICASETS, namespace=NS))["items"]
    return [rs for rs in items if any(r["name"] == name for r in rs["metadata"].get("ownerReferences") or [])]


async def mark_ready(client: ApiClient, pod: Obj) -> None:
    """Stand in for the node agent: report the pod Running and Ready."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
    }
    await client.patch(PODS, pod["metadata"]["name"], {"status": status}, namespace=NS, subresource="status")


@contextlib.asynccontextmanager
async def auto_ready(client: ApiClient, selector: str) -> AsyncIterator[None]:
    """Mark every pod matching ``selector`` Ready as soon as it exists (an agent that always succeeds)."""

    async def loop() -> None:
        while True:
            for pod in await active_pods(client, selector):
                if not is_ready(pod):
                    with contextlib.suppress(Exception):
                        await mark_ready(client, pod)
            await asyncio.sleep(0.05)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def api(inproc_api: Any) -> AsyncIterator[ApiClient]:
    client: ApiClient = inproc_api.client
    async with running_controllers(client, ["replicaset", "deployment"]):
        yield client


async def rolled_out(client: ApiClient, name: str, replicas: int, timeout: float = 10.0) -> Obj:
    """The Deployment once its status says the current generation is fully rolled out."""

    async def check() -> Obj | None:
        d = await client.get(DEPLOYMENTS, name, namespace=NS)
        st = d.get("status") or {}
        done = (
            st.get("observedGeneration") == d["metadata"]["generation"]
            and st.get("replicas") == replicas
            and st.get("updatedReplicas") == replicas
            and st.get("availableReplicas") == replicas
        )
        return d if done else None

    result: Obj = await eventually(check, timeout=timeout, what=f"{name} rolled out with {replicas} replicas")
    return result


def condition(d: Obj, type_: str) -> Obj | None:
    return next((c for c in d.get("status", {}).get("conditions") or [] if c["type"] == type_), None)


# --- arithmetic (no server) ------------------------------------------------------------------


def _d(replicas: int, surge: Any, unavailable: Any) -> Obj:
    ru = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {"spec": {"replicas": replicas, "strategy": {"type": "RollingUpdate", "rollingUpdate": ru}}}


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "expected"),
    [
        (10, "25%", "25%", (3, 2)),  # surge rounds up, unavailable rounds down
        (4, "25%", "25%", (1, 1)),
        (3, "10%", "10%", (1, 0)),
        (3, 0, 0, (0, 1)),  # both zero would never progress: one pod may be unavailable
        (5, 2, "40%", (2, 2)),
    ],
)
def test_fenceposts(replicas: int, surge: Any, unavailable: Any, expected: tuple[int, int]) -> None:
    assert du.resolve_fenceposts(_d(replicas, surge, unavailable)) == expected


def test_max_unavailable_is_capped_and_zero_for_recreate() -> None:
    assert du.max_unavailable(_d(2, 0, 5)) == 2
    assert du.max_unavailable({"spec": {"replicas": 3, "strategy": {"type": "Recreate"}}}) == 0


def _rs(spec: int, status: int = 0) -> Obj:
    return {"spec": {"replicas": spec}, "status": {"replicas": status}}


def test_new_rs_growth_is_capped_by_surge_and_by_pods_still_going() -> None:
    d = _d(4, 1, 1)
    new = _rs(0)
    assert du.new_rs_new_replicas(d, [_rs(4, 4), new], new) == 1
    new = _rs(1, 1)
    # The old ReplicaSet was told to shrink to 3 but still has 4 pods: no room yet.
    assert du.new_rs_new_replicas(d, [_rs(3, 4), new], new) == 1
    assert du.new_rs_new_replicas(d, [_rs(3, 3), new], new) == 2
    assert du.new_rs_new_replicas(d, [_rs(0, 0), _rs(4, 4)], _rs(4, 4)) == 4  # never past replicas


def test_proportional_fraction() -> None:
    d = _d(20, 2, 2)
    rs = {"metadata": {"annotations": {du.MAX_REPLICAS: "12"}}, "spec": {"replicas": 8}}
    assert du.replicaset_fraction(rs, d) == 7  # 8 * 22 / 12 = 14.67 -> 15
    assert du.replicaset_fraction(rs, _d(0, 2, 2)) == -8


# --- with the controllers --------------------------------------------------------------------


async def test_create_makes_replicaset_and_pods(api: ApiClient) -> None:
    async with auto_ready(api, "app=web"):
        d = await api.create(DEPLOYMENTS, deployment("web", 3))
        d = await rolled_out(api, "web", 3)
    (rs,) = await owned_rss(api, "web")
    pod_hash = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{pod_hash}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": pod_hash}
    assert rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == pod_hash
    (ref,) = rs["metadata"]["ownerReferences"]
    assert ref["kind"] == "Deployment" and ref["uid"] == d["metadata"]["uid"] and ref["controller"] is True
    assert rs["metadata"]["annotations"][REVISION] == "1"
    assert d["metadata"]["annotations"][REVISION] == "1"
    pods = await active_pods(api, "app=web")
    assert len(pods) == 3
    assert all(p["metadata"]["labels"]["pod-template-hash"] == pod_hash for p in pods)
    st = d["status"]
    assert st["readyReplicas"] == 3 and st["unavailableReplicas"] == 0
    available = condition(d, "Available")
    progressing = condition(d, "Progressing")
    assert (
        available is not None
        and available["status"] == "True"
        and available["reason"] == "MinimumReplicasAvailable"
    )
    assert progressing is not None and progressing["status"] == "True"
    assert progressing["reason"] == "NewReplicaSetAvailable"

    async def scaled_event() -> bool:
        items = (await api.list(EVENTS, namespace=NS, field_selector="involvedObject.name=web"))["items"]
        return any(
            e["reason"] == "ScalingReplicaSet"
            and e["message"] == f"Scaled up replica set web-{pod_hash} to 3"
            for e in items
        )

    await eventually(scaled_event, what="a ScalingReplicaSet event")


async def test_unavailable_pods_reported(api: ApiClient) -> None:
    await api.create(DEPLOYMENTS, deployment("slow", 2))

    async def counted() -> Obj | None:
        d = await api.get(DEPLOYMENTS, "slow", namespace=NS)
        st = d.get("status") or {}
        return d if st.get("replicas") == 2 and st.get("unavailableReplicas") == 2 else None

    d = await eventually(counted, what="two unavailable replicas")
    available = condition(d, "Available")
    assert available is not None and available["status"] == "False"
    assert available["reason"] == "MinimumReplicasUnavailable"


async def test_scale_to_zero_and_back(api: ApiClient) -> None:
    async with auto_ready(api, "app=zero"):
        await api.create(DEPLOYMENTS, deployment("zero", 3))
        await rolled_out(api, "zero", 3)
        (rs,) = await owned_rss(api, "zero")
        await api.patch(DEPLOYMENTS, "zero", {"spec": {"replicas": 0}}, namespace=NS)
        await rolled_out(api, "zero", 0)
        assert await eventually(lambda: _no_pods(api, "app=zero"), what="no pods")
        await api.patch(DEPLOYMENTS, "zero", {"spec": {"replicas": 2}}, namespace=NS)
        await rolled_out(api, "zero", 2)
    # The same ReplicaSet throughout: scaling is not a new revision.
    (again,) = await owned_rss(api, "zero")
    assert again["metadata"]["uid"] == rs["metadata"]["uid"] and again["spec"]["replicas"] == 2
    assert len(await active_pods(api, "app=zero")) == 2


async def _no_pods(api: ApiClient, selector: str) -> bool:
    return not await active_pods(api, selector)


async def test_rolling_update_respects_surge_and_unavailability(api: ApiClient) -> None:
    replicas, surge, unavailable = 4, 1, 1
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}
    async with auto_ready(api, "app=roll"):
        await api.create(DEPLOYMENTS, deployment("roll", replicas, strategy=strategy))
        await rolled_out(api, "roll", replicas)
    (old_rs,) = await owned_rss(api, "roll")

    # Watch every pod change from here on and check both bounds on each state seen.
    listed = await api.list(PODS, namespace=NS, label_selector="app=roll")
    pods: dict[str, Obj] = {p["metadata"]["name"]: p for p in listed["items"]}
    violations: list[str] = []
    states = 0

    def check() -> None:
        nonlocal states
        states += 1
        live = [p for p in pods.values() if not p["metadata"].get("deletionTimestamp")]
        ready = sum(1 for p in live if is_ready(p))
        if len(live) > replicas + surge:
            violations.append(f"{len(live)} pods > {replicas + surge}")
        if ready < replicas - unavailable:
            violations.append(f"{ready} ready < {replicas - unavailable}")

    async def watch() -> None:
        rv = listed["metadata"]["resourceVersion"]
        async for ev in api.watch(PODS, namespace=NS, label_selector="app=roll", resource_version=rv):
            name = ev.object["metadata"]["name"]
            if ev.type == "DELETED":
                pods.pop(name, None)
            elif ev.type in ("ADDED", "MODIFIED"):
                pods[name] = ev.object
            check()

    watcher = asyncio.create_task(watch())
    try:
        await api.patch(
            DEPLOYMENTS, "roll", {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}},
            namespace=NS,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        steps = 0
        while True:
            assert time.monotonic() < deadline, f"rollout did not finish; pods: {sorted(pods)}"
            d = await api.get(DEPLOYMENTS, "roll", namespace=NS)
            st = d.get("status") or {}
            live = await active_pods(api, "app=roll")
            old_left = [
                p
                for p in live
                if p["metadata"]["labels"]["pod-template-hash"]
                == old_rs["metadata"]["labels"]["pod-template-hash"]
            ]
            if (
                st.get("updatedReplicas") == replicas
                and st.get("availableReplicas") == replicas
                and not old_left
                and len(live) == replicas
            ):
                break
            waiting = [
                p for p in live if p["spec"]["containers"][0]["image"] == "nginx:2" and not is_ready(p)
            ]
            if waiting:
                await mark_ready(api, waiting[0])  # one new pod becomes Ready: one step of the rollout
                steps += 1
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.2)  # let the watcher see the last events
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

    assert violations == []
    assert states > 0 and steps >= replicas
    rss = {rs["metadata"]["name"]: rs for rs in await owned_rss(api, "roll")}
    assert len(rss) == 2
    new_rs = next(rs for n, rs in rss.items() if n != old_rs["metadata"]["name"])
    assert new_rs["spec"]["replicas"] == replicas
    assert rss[old_rs["metadata"]["name"]]["spec"]["replicas"] == 0
    assert new_rs["metadata"]["annotations"][REVISION] == "2"
    d = await rolled_out(api, "roll", replicas)
    assert d["metadata"]["annotations"][REVISION] == "2"
    assert all(p["spec"]["containers"][0]["image"] == "nginx:2" for p in await active_pods(api, "app=roll"))


async def test_recreate_never_runs_old_and_new_together(api: ApiClient) -> None:
    seen_mixed: list[set[str]] = []
    async with auto_ready(api, "app=rec"):
        await api.create(DEPLOYMENTS, deployment("rec", 2, strategy={"type": "Recreate"}))
        await rolled_out(api, "rec", 2)
        listed = await api.list(PODS, namespace=NS, label_selector="app=rec")
        images: dict[str, str] = {
            p["metadata"]["name"]: p["spec"]["containers"][0]["image"] for p in listed["items"]
        }

        async def watch() -> None:
            rv = listed["metadata"]["resourceVersion"]
            async for ev in api.watch(PODS, namespace=NS, label_selector="app=rec", resource_version=rv):
                name = ev.object["metadata"]["name"]
                if ev.type == "DELETED":
                    images.pop(name, None)
                else:
                    images[name] = ev.object["spec"]["containers"][0]["image"]
                if len(set(images.values())) > 1:
                    seen_mixed.append(set(images.values()))

        watcher = asyncio.create_task(watch())
        try:
            await api.patch(
                DEPLOYMENTS, "rec", {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}},
                namespace=NS,
            )  # fmt: skip
            d = await rolled_out(api, "rec", 2)
            await asyncio.sleep(0.2)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    assert seen_mixed == []
    assert {p["spec"]["containers"][0]["image"] for p in await active_pods(api, "app=rec")} == {"nginx:2"}
    sizes = sorted(
        (rs["metadata"]["annotations"][REVISION], rs["spec"]["replicas"])
        for rs in await owned_rss(api, "rec")
    )
    assert sizes == [("1", 0), ("2", 2)]
    assert d["metadata"]["annotations"][REVISION] == "2"


async def test_revision_history_limit(api: ApiClient) -> None:
    async with auto_ready(api, "app=hist"):
        await api.create(DEPLOYMENTS, deployment("hist", 1, revisionHistoryLimit=1))
        await rolled_out(api, "hist", 1)
        for image in ("nginx:2", "nginx:3", "nginx:4"):
            patch = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}}
            await api.patch(DEPLOYMENTS, "hist", patch, namespace=NS)
            await rolled_out(api, "hist", 1)

        async def trimmed() -> list[str] | None:
            revs = sorted(rs["metadata"]["annotations"][REVISION] for rs in await owned_rss(api, "hist"))
            return revs if revs == ["3", "4"] else None

        await eventually(trimmed, what="only the newest old ReplicaSet kept")


async def test_paused_deployment_does_not_roll_out(api: ApiClient) -> None:
    async with auto_ready(api, "app=pz"):
        await api.create(DEPLOYMENTS, deployment("pz", 2))
        await rolled_out(api, "pz", 2)
        await api.patch(DEPLOYMENTS, "pz", {"spec": {"paused": True}}, namespace=NS)

        async def paused_condition() -> bool:
            c = condition(await api.get(DEPLOYMENTS, "pz", namespace=NS), "Progressing")
            return c is not None and c["reason"] == "DeploymentPaused" and c["status"] == "Unknown"

        await eventually(paused_condition, what="the DeploymentPaused condition")
        patch = {
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}
        }
        await api.patch(DEPLOYMENTS, "pz", patch, namespace=NS)

        async def scaled_only() -> bool:
            d = await api.get(DEPLOYMENTS, "pz", namespace=NS)
            return (
                d["status"].get("observedGeneration") == d["metadata"]["generation"]
                and d["status"].get("availableReplicas") == 3
            )

        await eventually(scaled_only, what="the paused deployment scaled in place")
        (rs,) = await owned_rss(api, "pz")  # no new ReplicaSet while paused
        assert rs["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1"
        await api.patch(DEPLOYMENTS, "pz", {"spec": {"paused": False}}, namespace=NS)
        await rolled_out(api, "pz", 3)
    assert {p["spec"]["containers"][0]["image"] for p in await active_pods(api, "app=pz")} == {"nginx:2"}


async def test_progress_deadline_exceeded(api: ApiClient) -> None:
    await api.create(DEPLOYMENTS, deployment("stuck", 1, progressDeadlineSeconds=1))

    async def timed_out() -> bool:
        c = condition(await api.get(DEPLOYMENTS, "stuck", namespace=NS), "Progressing")
        return c is not None and c["status"] == "False" and c["reason"] == "ProgressDeadlineExceeded"

    # No agent marks the pod ready, and nothing else changes: the controller's requeue finds it.
    await eventually(timed_out, timeout=8, what="ProgressDeadlineExceeded")


async def test_scaling_mid_rollout_is_proportional(api: ApiClient) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2, "maxUnavailable": 2}}
    async with auto_ready(api, "app=prop"):
        await api.create(DEPLOYMENTS, deployment("prop", 10, strategy=strategy))
        await rolled_out(api, "prop", 10)
    # New pods never become ready: the rollout stalls with both ReplicaSets holding replicas.
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}}
    await api.patch(DEPLOYMENTS, "prop", patch, namespace=NS)

    async def stalled() -> list[int] | None:
        rss = await owned_rss(api, "prop")
        sizes = sorted(rs["spec"]["replicas"] for rs in rss)
        return sizes if len(rss) == 2 and sizes == [4, 8] else None

    await eventually(stalled, what="a stalled rollout of 8 old + 4 new")
    await api.patch(DEPLOYMENTS, "prop", {"spec": {"replicas": 20}}, namespace=NS)

    async def rescaled() -> dict[str, int] | None:
        rss = await owned_rss(api, "prop")
        by_image = {
            rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs["spec"]["replicas"] for rs in rss
        }
        return by_image if sum(by_image.values()) == 22 else None

    sizes = await eventually(rescaled, what="both ReplicaSets resized to 20 + maxSurge")
    # 12 pods grew to 22: each ReplicaSet keeps its share (8:4 -> about 15:7), neither is dropped.
    assert sizes["nginx:1"] > 8 and sizes["nginx:2"] > 4, sizes


async def test_adopts_orphan_replicaset(api: ApiClient) -> None:
    # A matching ReplicaSet nobody controls (say, left by a Deployment deleted with orphan
    # cascade) is adopted, and serves as the new ReplicaSet when its template is the same.
    manifest = deployment("orph", 2)
    template = manifest["spec"]["template"]
    labels = {"app": "orph", "pod-template-hash": "manual"}
    rs = await api.create(REPLICASETS, {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "orph-manual", "namespace": NS, "labels": labels},
        "spec": {
            "replicas": 1, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": template["spec"]},
        },
    })  # fmt: skip
    async with auto_ready(api, "app=orph"):
        d = await api.create(DEPLOYMENTS, manifest)
        await rolled_out(api, "orph", 2)
    (again,) = await owned_rss(api, "orph")
    assert again["metadata"]["uid"] == rs["metadata"]["uid"]
    assert again["metadata"]["ownerReferences"][0]["uid"] == d["metadata"]["uid"]
    assert again["spec"]["replicas"] == 2


def _kubeconfig(path: Path, url: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: c, cluster: {{server: '{url}'}}}}]\n"
        "users: [{name: u, user: {}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u, namespace: default}}]\n"
        "current-context: x\n"
    )
    return path


async def _kubelite(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubelite", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cli_scale(api: ApiClient, inproc_api: Any, tmp_path: Path) -> None:
    kc = str(_kubeconfig(tmp_path / "kubeconfig", inproc_api.url))
    await api.create(DEPLOYMENTS, deployment("web", 1))
    code, out, err = await _kubelite("scale", "deployment/web", "--replicas", "3", "--kubeconfig", kc)
    assert code == 0, err
    assert out.strip() == "deployment.apps/web scaled"
    assert (await api.get(DEPLOYMENTS, "web", namespace=NS))["spec"]["replicas"] == 3

    async def three_pods() -> bool:
        return len(await active_pods(api, "app=web")) == 3

    await eventually(three_pods, what="the controllers to follow the new scale")

    code, _out, err = await _kubelite(
        "scale", "deploy", "web", "--replicas", "1", "--current-replicas", "2", "--kubeconfig", kc
    )
    assert code == 1 and err.strip() == "error: Expected replicas to be 2, was 3"
    code, _out, err = await _kubelite("scale", "deployment/nope", "--replicas", "1", "--kubeconfig", kc)
    assert code == 1 and err.startswith("error: ") and "nope" in err and "Traceback" not in err
    code, _out, err = await _kubelite("scale", "configmap/x", "--replicas", "1", "--kubeconfig", kc)
    assert code == 1 and "cannot be scaled" in err
