"""The ReplicaSet controller: keeps ``spec.replicas`` active pods matching ``spec.selector``.

As Kubernetes' ``pkg/controller/replicaset``: one sync per ReplicaSet key that

1. claims pods (adopts matching orphans, releases owned pods that stopped matching);
2. if every create/delete it asked for earlier has shown up in the informer ("expectations"),
   creates the missing pods in slow-start batches (1, 2, 4, ...) or deletes the surplus, least
   valuable first;
3. writes ``status`` (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas,
   observedGeneration, a ReplicaFailure condition) when it changed.

Pods being deleted (deletionTimestamp) or finished do not count: they are being replaced.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from kubelite.api.selectors import SelectorError, label_selector_from_dict
from kubelite.client import ApiError
from kubelite.controllers.base import PODS, REPLICASETS, Controller, Obj
from kubelite.controllers.podutil import (
    CONTROLLER_UID_INDEX,
    Expectations,
    claim_candidates,
    claim_dependents,
    controller_uid_index,
    deletion_order,
    get_controller_of,
    is_active,
    is_pod_available,
    is_pod_ready,
    is_terminating,
    pod_from_template,
    ready_since,
)

log = logging.getLogger(__name__)

# Kubernetes' BurstReplicas: at most this many creates or deletes per sync.
BURST_REPLICAS = 500


async def slow_start_batch(count: int, fn: Callable[[], Awaitable[None]], initial: int = 1) -> tuple[int, Exception | None]:
    """Call ``fn`` ``count`` times in concurrent batches of 1, 2, 4, ...; stop after a failing batch.

    Returns (successes, first error). A quota or admission error thus costs one call, not
    ``count`` (Kubernetes' slowStartBatch).
    """
    done, batch = 0, min(count, initial)
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        done += batch - len(errors)
        for err in errors:
            if not isinstance(err, Exception):
                raise err  # cancellation
        if errors:
            first = errors[0]
            assert isinstance(first, Exception)
            return done, first
        remaining = count - done
        batch = min(remaining, 2 * batch)
    return done, None


class ReplicaSetController(Controller):
    name = "replicaset"
    primary = REPLICASETS

    def setup(self) -> None:
        self.expectations = Expectations()
        self.replicasets = self.watch_primary()
        self.pods = self.watch_owned(PODS)
        self.pods.add_index(CONTROLLER_UID_INDEX, controller_uid_index)
        self.watch_mapped(PODS, self._orphan_owners)
        self.pods.add_handler(on_add=self._pod_added, on_update=self._pod_updated, on_delete=self._pod_deleted)

    # ---- event handlers (quick: bookkeeping and keys only) ------------------------------------

    def _owner_key(self, pod: Obj) -> str | None:
        ref = get_controller_of(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return None
        return f"{(pod.get('metadata') or {}).get('namespace')}/{ref.get('name')}"

    def _orphan_owners(self, pod: Obj) -> list[str]:
        """ReplicaSets that could adopt an orphan pod (matching selector, same namespace)."""
        if get_controller_of(pod) is not None:
            return []
        m = pod.get("metadata") or {}
        ns, labels = m.get("namespace"), m.get("labels") or {}
        keys = []
        for rs in self.replicasets.list(ns):
            try:
                if label_selector_from_dict((rs.get("spec") or {}).get("selector")).matches(labels):
                    keys.append(f"{ns}/{rs['metadata']['name']}")
            except SelectorError:
                continue
        return keys

    def _pod_added(self, pod: Obj) -> None:
        key = self._owner_key(pod)
        if key is None:
            return
        if is_terminating(pod):
            # Seen for the first time already deleting (after a relist): counts as a deletion.
            self.expectations.deletion_observed(key, str(pod["metadata"].get("uid")))
        else:
            self.expectations.creation_observed(key)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        key = self._owner_key(new)
        if key is not None and is_terminating(new) and not is_terminating(old):
            self.expectations.deletion_observed(key, str(new["metadata"].get("uid")))

    def _pod_deleted(self, pod: Obj) -> None:
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.deletion_observed(key, str((pod.get("metadata") or {}).get("uid")))

    # ---- sync -----------------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        rs = self.replicasets.get_by_key(key)
        if rs is None:
            self.expectations.forget(key)
            return
        rs = {**rs, "apiVersion": REPLICASETS.api_version, "kind": REPLICASETS.kind}
        spec = rs.get("spec") or {}
        try:
            selector = label_selector_from_dict(spec.get("selector"))
        except SelectorError as e:
            self.recorder.event(rs, "Warning", "InvalidSelector", f"invalid selector: {e}")
            return
        # Read expectations before listing: pods observed in between are then counted, not missed.
        needs_sync = self.expectations.satisfied(key)
        candidates = [p for p in claim_candidates(self.pods, rs) if is_active(p)]
        pods = await claim_dependents(self.client, PODS, rs, selector, candidates)

        manage_error: Exception | None = None
        if needs_sync and not (rs.get("metadata") or {}).get("deletionTimestamp"):
            try:
                await self._manage_replicas(key, rs, pods)
            except ApiError as e:
                manage_error = e
        await self._update_status(rs, pods, manage_error)
        if manage_error is not None:
            raise manage_error
        self._requeue_for_availability(rs, pods)

    async def _manage_replicas(self, key: str, rs: Obj, pods: list[Obj]) -> None:
        want = int((rs.get("spec") or {}).get("replicas", 1))
        diff = len(pods) - want
        name = rs["metadata"]["name"]
        if diff < 0:
            n = min(-diff, BURST_REPLICAS)
            # Expect all of them before the first write: the informer may deliver them mid-batch.
            self.expectations.expect_creations(key, n)
            template = (rs.get("spec") or {}).get("template") or {}

            async def create_one() -> None:
                pod = pod_from_template(template, rs)
                try:
                    created = await self.client.create(PODS, pod, namespace=rs["metadata"]["namespace"])
                except ApiError as e:
                    self.recorder.event(rs, "Warning", "FailedCreate", f"Error creating: {e.message}")
                    raise
                self.recorder.event(rs, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")

            ok, err = await slow_start_batch(n, create_one)
            if ok < n:
                # Failed or never attempted: no informer event will ever lower these.
                self.expectations.creation_observed(key, n - ok)
            if err is not None:
                raise err
        elif diff > 0:
            victims = deletion_order(pods)[: min(diff, BURST_REPLICAS)]
            self.expectations.expect_deletions(key, [str(p["metadata"]["uid"]) for p in victims])
            results = await asyncio.gather(*(self._delete_pod(key, rs, p) for p in victims), return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    raise r
            log.debug("replicaset %s: deleted %d of %d surplus pods", name, len(victims), diff)

    async def _delete_pod(self, key: str, rs: Obj, pod: Obj) -> None:
        m = pod["metadata"]
        try:
            await self.client.delete(PODS, m["name"], namespace=m["namespace"], preconditions={"uid": m["uid"]})
        except ApiError as e:
            self.expectations.deletion_observed(key, str(m["uid"]))
            if e.code == 404:
                return
            self.recorder.event(rs, "Warning", "FailedDelete", f"Error deleting: {e.message}")
            raise
        self.recorder.event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {m['name']}")

    # ---- status -------------------------------------------------------------------------------

    def _calculate_status(self, rs: Obj, pods: list[Obj], manage_error: Exception | None) -> Obj:
        spec = rs.get("spec") or {}
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        now = time.time()
        fully = sum(
            1
            for p in pods
            if all(((p.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in template_labels.items())
        )
        status: Obj = dict(rs.get("status") or {})
        status.update(
            replicas=len(pods),
            fullyLabeledReplicas=fully,
            readyReplicas=sum(1 for p in pods if is_pod_ready(p)),
            availableReplicas=sum(1 for p in pods if is_pod_available(p, min_ready, now)),
            observedGeneration=(rs.get("metadata") or {}).get("generation", 0),
        )
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "ReplicaFailure"]
        if manage_error is not None:
            old = next((c for c in status.get("conditions") or [] if c.get("type") == "ReplicaFailure"), None)
            want = int(spec.get("replicas", 1))
            reason = "FailedCreate" if len(pods) < want else "FailedDelete"
            message = str(getattr(manage_error, "message", manage_error))
            if old is not None and old.get("reason") == reason and old.get("message") == message:
                conditions.append(old)
            else:
                conditions.append(
                    {
                        "type": "ReplicaFailure",
                        "status": "True",
                        "reason": reason,
                        "message": message,
                        "lastTransitionTime": _now_rfc3339(),
                    }
                )
        if conditions:
            status["conditions"] = conditions
        else:
            status.pop("conditions", None)
        return status

    async def _update_status(self, rs: Obj, pods: list[Obj], manage_error: Exception | None) -> None:
        status = self._calculate_status(rs, pods, manage_error)
        if status == (rs.get("status") or {}):
            return
        try:
            await self.client.replace_status(REPLICASETS, {**rs, "status": status})
        except ApiError as e:
            if e.code == 404:
                return
            if e.code != 409:
                raise
            # Our cached copy is stale: write the same status onto the current object once.
            m = rs["metadata"]
            try:
                fresh = await self.client.get(REPLICASETS, m["name"], namespace=m["namespace"])
            except ApiError as e2:
                if e2.code == 404:
                    return
                raise
            try:
                await self.client.replace_status(REPLICASETS, {**fresh, "status": status})
            except ApiError as e3:
                if e3.code != 409:
                    raise
                # Someone (the Deployment controller) keeps changing it: its event will bring us back.
                log.debug("replicaset %s: status conflict, retrying", m["name"])
                self.enqueue(rs, after=0.05)

    def _requeue_for_availability(self, rs: Obj, pods: list[Obj]) -> None:
        """Come back when a Ready pod has been Ready for minReadySeconds (no event marks that)."""
        min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
        if not min_ready:
            return
        now = time.time()
        waits = [
            since + min_ready - now
            for p in pods
            if (since := ready_since(p)) is not None and not is_pod_available(p, min_ready, now)
        ]
        if waits:
            self.enqueue(rs, after=max(min(waits), 0.0) + 0.1)


def _now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

