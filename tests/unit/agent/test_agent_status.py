"""Pod status computation (pure): spec + observed containers -> status."""

from __future__ import annotations

from typing import Any

from kubelite.agent.pods import (
    ContainerRecord,
    PodRecord,
    compute_pod_status,
    pod_phase,
    status_patch,
)
from kubelite.agent.runtime import ContainerState, ContainerStatus, PodSandbox, SandboxState

NOW = "2026-01-01T00:00:00Z"
LATER = "2026-01-01T00:05:00Z"


def _pod(restart: str = "Always", init: bool = False, status: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"restartPolicy": restart, "containers": [{"name": "a", "image": "img-a"}, {"name": "b", "image": "img-b"}]}
    if init:
        spec["initContainers"] = [{"name": "i", "image": "img-i"}]
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": spec, "status": status or {}}


def _st(cid: str, state: ContainerState, code: int | None = None) -> ContainerStatus:
    return ContainerStatus(
        id=cid, state=state, exit_code=code, started_at=NOW,
        finished_at=NOW if state is ContainerState.EXITED else None, image_id="sha256:x",
    )


def _record(a: ContainerStatus | None, b: ContainerStatus | None, init: ContainerStatus | None = None) -> PodRecord:
    rec = PodRecord(uid="u1", key="ns/p", sandbox=PodSandbox("sb", "u1", "ns", "p", "100.64.0.2", SandboxState.READY, NOW))
    rec.start_time = NOW
    for name, st in (("a", a), ("b", b)):
        if st is not None:
            rec.containers[name] = ContainerRecord(name, container_id=st.id, status=st)
    if init is not None:
        rec.init["i"] = ContainerRecord("i", container_id=init.id, status=init)
    return rec


def _conds(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


def test_all_running_is_running_and_ready() -> None:
    rec = _record(_st("c1", ContainerState.RUNNING), _st("c2", ContainerState.RUNNING))
    status = compute_pod_status(_pod(), rec, host_ip="10.0.0.5", scheme="fake", now=NOW)
    assert status["phase"] == "Running"
    assert _conds(status) == {"PodScheduled": "True", "PodReadyToStartContainers": "True", "Initialized": "True",
                              "Ready": "True", "ContainersReady": "True"}
    assert status["podIP"] == "100.64.0.2" and status["podIPs"] == [{"ip": "100.64.0.2"}]
    assert status["hostIP"] == "10.0.0.5" and status["startTime"] == NOW
    a = status["containerStatuses"][0]
    assert a == {
        "name": "a", "image": "img-a", "imageID": "sha256:x", "containerID": "fake://c1", "ready": True,
        "started": True, "restartCount": 0, "state": {"running": {"startedAt": NOW}}, "lastState": {},
    }
    assert status["qosClass"] == "BestEffort"


def test_not_started_container_keeps_pod_pending_and_unready() -> None:
    rec = _record(_st("c1", ContainerState.RUNNING), None)
    status = compute_pod_status(_pod(), rec, host_ip="10.0.0.5", scheme="fake", now=NOW)
    assert status["phase"] == "Pending"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ContainersNotReady"
    assert ready["message"] == "containers with unready status: [b]"
    assert status["containerStatuses"][1]["state"] == {"waiting": {"reason": "ContainerCreating"}}


def test_pending_init_container() -> None:
    rec = _record(None, None, init=_st("i1", ContainerState.RUNNING))
    status = compute_pod_status(_pod(init=True), rec, host_ip="10.0.0.5", scheme="fake", now=NOW)
    assert status["phase"] == "Pending"
    assert _conds(status)["Initialized"] == "False"
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert status["initContainerStatuses"][0]["state"] == {"running": {"startedAt": NOW}}


def test_failed_init_container_with_restart_never_fails_the_pod() -> None:
    rec = _record(None, None, init=_st("i1", ContainerState.EXITED, 3))
    status = compute_pod_status(_pod(restart="Never", init=True), rec, host_ip="10.0.0.5", scheme="fake", now=NOW)
    assert status["phase"] == "Failed"
    assert status["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 3


def test_terminal_phases_follow_restart_policy() -> None:
    ok, bad = _st("c1", ContainerState.EXITED, 0), _st("c2", ContainerState.EXITED, 1)
    for policy, a, b, phase in [
        ("Never", ok, ok, "Succeeded"),
        ("Never", ok, bad, "Failed"),
        ("OnFailure", ok, ok, "Succeeded"),
        ("OnFailure", ok, bad, "Running"),  # b will be restarted
        ("Always", ok, ok, "Running"),
    ]:
        status = compute_pod_status(_pod(restart=policy), _record(a, b), host_ip="10.0.0.5", scheme="fake", now=NOW)
        assert status["phase"] == phase, policy
    done = compute_pod_status(_pod(restart="Never"), _record(ok, ok), host_ip="10.0.0.5", scheme="fake", now=NOW)
    ready = next(c for c in done["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "PodCompleted"
    assert done["containerStatuses"][1]["state"]["terminated"]["reason"] == "Completed"


def test_crash_loop_back_off_shows_waiting_and_last_state() -> None:
    rec = _record(_st("c1", ContainerState.RUNNING), _st("c2", ContainerState.EXITED, 2))
    rec.containers["b"].restart_count = 3
    rec.containers["b"].waiting_reason = "CrashLoopBackOff"
    rec.containers["b"].waiting_message = "back-off 40s restarting failed container=b"
    status = compute_pod_status(_pod(), rec, host_ip="10.0.0.5", scheme="fake", now=NOW)
    b = status["containerStatuses"][1]
    assert b["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container=b"}}
    assert b["lastState"]["terminated"]["exitCode"] == 2 and b["lastState"]["terminated"]["reason"] == "Error"
    assert b["restartCount"] == 3 and not b["ready"]
    assert status["phase"] == "Running"  # a crash-looping container has run: not Pending


def test_transition_times_kept_and_recomputation_is_a_fixed_point() -> None:
    rec = _record(_st("c1", ContainerState.RUNNING), _st("c2", ContainerState.RUNNING))
    first = compute_pod_status(_pod(), rec, host_ip="10.0.0.5", scheme="fake", now=NOW)
    again = compute_pod_status(_pod(status=first), rec, host_ip="10.0.0.5", scheme="fake", now=LATER)
    assert again == first
    assert status_patch(first, again) == {}
    # A change of readiness moves only that condition's transition time.
    rec.containers["b"].status = _st("c2", ContainerState.EXITED, 1)
    changed = compute_pod_status(_pod(status=first), rec, host_ip="10.0.0.5", scheme="fake", now=LATER)
    times = {c["type"]: c["lastTransitionTime"] for c in changed["conditions"]}
    assert times["Ready"] == LATER and times["Initialized"] == NOW
    patch = status_patch(first, changed)
    assert set(patch) == {"conditions", "containerStatuses"}


def test_foreign_status_fields_and_conditions_survive() -> None:
    old = {"nominatedNodeName": "x", "conditions": [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"},
        {"type": "DisruptionTarget", "status": "True", "lastTransitionTime": NOW},
    ]}
    status = compute_pod_status(_pod(status=old), _record(None, None), host_ip="10.0.0.5", scheme="fake", now=LATER)
    assert status["nominatedNodeName"] == "x"
    types = [c["type"] for c in status["conditions"]]
    assert types[0] == "PodScheduled" and "DisruptionTarget" in types
    assert status["conditions"][0]["lastTransitionTime"] == "2025-01-01T00:00:00Z"


def test_pod_phase_without_statuses_is_pending() -> None:
    assert pod_phase({"containers": [{"name": "a"}]}, [], []) == "Pending"


def test_guaranteed_qos() -> None:
    pod = _pod()
    for c in pod["spec"]["containers"]:
        c["resources"] = {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}
    assert compute_pod_status(pod, None, host_ip="10.0.0.5", scheme="fake", now=NOW)["qosClass"] == "Guaranteed"
