"""The scheduler: picks a node for each pending pod and binds it there.

Decisions are made one pod at a time from an in-memory ``Snapshot`` that the pod and node
informers keep current; nothing is read from the API server per pod. A chosen node is *assumed*
at once (the pod's requests count against it) and the Binding is posted in the background, up to
``max_binds_in_flight`` at a time, so a burst of pods is placed as fast as the plugins run while
each one still sees the pods placed before it. A failed bind forgets the assumption.

A pod that fits nowhere stays Pending with ``PodScheduled=False/Unschedulable``, gets a
``FailedScheduling`` event, and is parked until a node or pod change could make room (see
``queue.SchedulingQueue``), with a slow periodic retry as a safety net.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kubelite.apiserver.meta import rfc3339
from kubelite.client.informer import object_key
from kubelite.client.rest import ApiConnectionError, ApiError, resource_path
from kubelite.controllers.base import NODES, PODS, PVCS, PVS, Controller
from kubelite.scheduler.framework import FitError
from kubelite.scheduler.plugins import default_framework
from kubelite.scheduler.queue import SchedulingQueue
from kubelite.scheduler.snapshot import TERMINAL_PHASES, Snapshot, pod_info

__all__ = ["DEFAULT_SCHEDULER_NAME", "Scheduler", "responsible_for"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]

DEFAULT_SCHEDULER_NAME = "default-scheduler"


def responsible_for(pod: Obj, scheduler_name: str = DEFAULT_SCHEDULER_NAME) -> bool:
    """Is this a pod this scheduler should place: ours, unbound, not being deleted, not finished?"""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return False
    if (spec.get("schedulerName") or DEFAULT_SCHEDULER_NAME) != scheduler_name:
        return False
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES


def _scheduling_inputs(pod: Obj) -> tuple[Any, Any]:
    """What a pod's own update must change for a parked pod to deserve another attempt."""
    return pod.get("spec"), (pod.get("metadata") or {}).get("labels")


class Scheduler(Controller):
    name = "scheduler"
    primary = PODS

    scheduler_name = DEFAULT_SCHEDULER_NAME
    max_binds_in_flight = 16
    # Parked pods are retried at least this often even if no event says the cluster changed.
    unschedulable_flush_period = 30.0

    def setup(self) -> None:
        extra = self.settings.extra
        self.scheduler_name = str(extra.get("scheduler_name", self.scheduler_name))
        self.unschedulable_flush_period = float(
            extra.get("scheduler_flush_period", self.unschedulable_flush_period)
        )
        self.snapshot = Snapshot()
        # Claims and volumes pin pods with node-local data to their node (VolumeBinding).
        self.claims = self.informer(PVCS)
        self.volumes = self.informer(PVS)
        for inf in (self.claims, self.volumes):
            inf.add_handler(
                on_add=lambda _o: self.scheduling_queue.move_all_to_active(),
                on_update=lambda _old, _new: self.scheduling_queue.move_all_to_active(),
            )
        self.framework = default_framework(
            claims=lambda ns, name: self.claims.get(ns, name), volumes=lambda name: self.volumes.get(None, name)
        )
        self.scheduling_queue = SchedulingQueue()
        self._slots = asyncio.Semaphore(self.max_binds_in_flight)
        self._inflight: set[asyncio.Task[None]] = set()
        self._status_writes: dict[str, asyncio.Task[None]] = {}

        self.nodes = self.informer(NODES)
        self.nodes.add_handler(
            on_add=self._on_node,
            on_update=lambda _old, new: self._on_node(new),
            on_delete=self._on_node_delete,
        )
        self.pods = self.informer(PODS)
        self.pods.add_handler(
            on_add=self._on_pod_add, on_update=self._on_pod_update, on_delete=self._on_pod_delete
        )

    async def reconcile(self, key: str) -> None:  # pragma: no cover - run() is overridden
        await self.schedule_one(key)

    # --- informer handlers (quick: update the snapshot, move keys between queues) ----------------

    def _on_node(self, node: Obj) -> None:
        if self.snapshot.add_node(node):
            self.scheduling_queue.move_all_to_active()

    def _on_node_delete(self, node: Obj) -> None:
        self.snapshot.remove_node(node)

    def _on_pod_add(self, pod: Obj) -> None:
        freed = self.snapshot.update_pod(pod)
        key = object_key(pod)
        if responsible_for(pod, self.scheduler_name):
            if not self.snapshot.is_assumed(key):
                self.scheduling_queue.add(key)
        else:
            self.scheduling_queue.forget(key)
        if freed:
            self.scheduling_queue.move_all_to_active()

    def _on_pod_update(self, old: Obj, new: Obj) -> None:
        freed = self.snapshot.update_pod(new)
        key = object_key(new)
        q = self.scheduling_queue
        if not responsible_for(new, self.scheduler_name):
            q.forget(key)
        elif key in q.unschedulable:
            # Our own status write comes back as an update: only a changed spec earns a retry.
            if _scheduling_inputs(old) != _scheduling_inputs(new):
                q.add(key)
        elif key not in q and not self.snapshot.is_assumed(key):
            q.add(key)
        if freed:
            q.move_all_to_active()

    def _on_pod_delete(self, pod: Obj) -> None:
        freed = self.snapshot.remove_pod(pod)
        self.scheduling_queue.forget(object_key(pod))
        if freed:
            self.scheduling_queue.move_all_to_active()

    # --- the scheduling loop -------------------------------------------------------------------

    async def run(self) -> None:
        await self.ctx.informers.wait_synced(PODS, NODES, PVCS, PVS)
        log.info("scheduler %s started: %d nodes", self.scheduler_name, len(self.snapshot.node_list()))
        flusher = asyncio.create_task(self._flush_loop(), name="scheduler-flush")
        try:
            while True:
                key = await self.scheduling_queue.pop()
                await self.schedule_one(key)
                # Let informer events and bind responses in between pods of a long burst.
                await asyncio.sleep(0)
        finally:
            flusher.cancel()
            self.scheduling_queue.close()
            tasks = [flusher, *self._inflight]
            for t in self._inflight:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.unschedulable_flush_period)
            self.scheduling_queue.move_all_to_active()

    async def schedule_one(self, key: str) -> None:
        """One scheduling cycle: decide synchronously, then bind (or report) in the background."""
        pod = self.pods.get_by_key(key)
        if pod is None or not responsible_for(pod, self.scheduler_name) or self.snapshot.is_assumed(key):
            return
        info = pod_info(pod)
        try:
            result = self.framework.schedule(info, self.snapshot)
        except Exception:
            log.exception("scheduling %s failed", key)
            self.scheduling_queue.retry_after_error(key)
            return
        await self._slots.acquire()
        if result.node is None:
            assert result.error is not None
            self.scheduling_queue.mark_unschedulable(key)
            self._status_writes[key] = self._spawn(self._report_unschedulable(pod, result.error))
            return
        self.snapshot.assume(info, result.node)
        self._spawn(self._bind(pod, result.node))

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        """Run a write holding one of the slots taken by the caller."""
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._inflight.add(task)

        def finished(t: asyncio.Task[None]) -> None:
            self._inflight.discard(t)
            self._slots.release()

        task.add_done_callback(finished)
        return task

    async def _bind(self, pod: Obj, node: str) -> None:
        meta = pod["metadata"]
        ns, name = meta.get("namespace") or "default", meta["name"]
        key = object_key(pod)
        pending_status = self._status_writes.get(key)
        if pending_status is not None:
            # An Unschedulable condition still on its way must not land after the binding.
            await asyncio.wait([pending_status])
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": ns, "uid": meta.get("uid")},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        try:
            await self.client.request("POST", resource_path(PODS, ns, name, "binding"), json=body)
        except ApiError as e:
            self.snapshot.forget(key)
            if e.code in (404, 409):
                # Gone, being deleted, or already bound: the informer brings the truth; nothing to retry.
                log.info("binding %s to %s: %s", key, node, e)
                self.scheduling_queue.forget(key)
                return
            log.warning("binding %s to %s failed: %s", key, node, e)
            self.recorder.event(pod, "Warning", "FailedScheduling", f"Binding rejected: {e.message}")
            self.scheduling_queue.retry_after_error(key)
        except ApiConnectionError as e:
            self.snapshot.forget(key)
            log.warning("binding %s to %s failed: %s", key, node, e)
            self.scheduling_queue.retry_after_error(key)
        else:
            self.scheduling_queue.done(key)
            self.recorder.event(pod, "Normal", "Scheduled", f"Successfully assigned {ns}/{name} to {node}")

    async def _report_unschedulable(self, pod: Obj, err: FitError) -> None:
        key = object_key(pod)
        try:
            await self._write_unschedulable(pod, err.message())
        finally:
            if self._status_writes.get(key) is asyncio.current_task():
                del self._status_writes[key]

    async def _write_unschedulable(self, pod: Obj, message: str) -> None:
        key = object_key(pod)
        log.info("pod %s is unschedulable: %s", key, message)
        self.recorder.event(pod, "Warning", "FailedScheduling", message)
        current = next(
            (c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"),
            None,
        )
        if current is not None and (current.get("status"), current.get("reason"), current.get("message")) == (
            "False", "Unschedulable", message,
        ):  # fmt: skip
            return  # it already says so: no write per retry
        since = current.get("lastTransitionTime") if current and current.get("status") == "False" else None
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": None,
            "lastTransitionTime": since or rfc3339(),
        }
        meta = pod["metadata"]
        try:
            await self.client.patch(
                PODS,
                meta["name"],
                {"status": {"conditions": [condition]}},
                namespace=meta.get("namespace"),
                patch_type="strategic",
                subresource="status",
            )
        except (ApiError, ApiConnectionError) as e:
            log.info("could not record PodScheduled=False on %s: %s", key, e)
