"""Lease-based leader election, as client-go's ``tools/leaderelection`` (a coordination.k8s.io Lease).

Several control-plane processes run the same controllers; only the holder of the Lease
``kube-system/kubelite-controller-manager`` runs them. The rules are client-go's:

* acquire: create the Lease, or take it over when its holder is empty (released) or its record
  has not changed for ``leaseDurationSeconds`` *as observed on our own monotonic clock* (no
  trust in other machines' wall clocks); every write is a compare-and-swap on resourceVersion,
  so two candidates can never both win the same record.
* renew every ``retry_period``; a leader that has not renewed for ``renew_deadline`` stops at
  once, before anyone else may take over (``renew_deadline < lease_duration``), so two leaders
  never overlap while the clocks tick at the same rate.
* a clean shutdown releases the Lease (empty holder), so a successor need not wait it out.

``run()`` calls ``lead()`` as a task while leading and cancels it the moment leadership is lost;
then it campaigns again. Transitions are logged as ``started leading`` / ``stopped leading``
with ``time.monotonic()``, which on Linux is one clock for every process on the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import random
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from kubelite.client import ApiClient
from kubelite.client.rest import ApiConnectionError, ApiError
from kubelite.controllers.base import LEASES

log = logging.getLogger(__name__)

__all__ = ["LeaderElectionConfig", "LeaderElector", "default_identity"]


def default_identity() -> str:
    """``<hostname>_<uuid>``: unique per process, readable in the Lease."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


@dataclass
class LeaderElectionConfig:
    name: str = "kubelite-controller-manager"
    namespace: str = "kube-system"
    identity: str = field(default_factory=default_identity)
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "leader election needs 0 < retry period < renew deadline < lease duration "
                f"(got {self.retry_period}, {self.renew_deadline}, {self.lease_duration})"
            )


def _micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        client: ApiClient,
        config: LeaderElectionConfig,
        lead: Callable[[], Coroutine[Any, Any, None]],
        on_stopped_leading: Callable[[], None] | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self._lead = lead
        self._on_stopped = on_stopped_leading
        # The last record seen and when (our monotonic clock): expiry is judged from these.
        self._observed_rv = ""
        self._observed_at = 0.0
        self._observed_duration = config.lease_duration
        self.leading = False

    # -- one attempt -------------------------------------------------------------------------

    async def _try_acquire_or_renew(self) -> bool:
        """One compare-and-swap attempt; True if we hold the Lease afterwards."""
        cfg = self.config
        try:
            lease = await self.client.get(LEASES, cfg.name, cfg.namespace)
        except ApiError as e:
            if e.code != 404:
                raise
            return await self._create()
        # Taken after the read: a change is dated no earlier than we could have seen it.
        now = time.monotonic()
        spec: dict[str, Any] = lease.get("spec") or {}
        rv = lease["metadata"].get("resourceVersion", "")
        if rv != self._observed_rv:
            self._observed_rv, self._observed_at = rv, now
            self._observed_duration = float(spec.get("leaseDurationSeconds") or cfg.lease_duration)
        holder = spec.get("holderIdentity") or ""
        if holder and holder != cfg.identity and now < self._observed_at + self._observed_duration:
            return False  # someone else holds an unexpired lease
        stamp = _micro_now()
        new_spec = dict(spec)
        if holder != cfg.identity:
            new_spec["acquireTime"] = stamp
            new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if holder else 0)
        new_spec.update(
            holderIdentity=cfg.identity, leaseDurationSeconds=math.ceil(cfg.lease_duration), renewTime=stamp
        )
        try:
            updated = await self.client.replace(LEASES, {**lease, "spec": new_spec})
        except ApiError as e:
            if e.code == 409:
                return False  # another candidate wrote first
            raise
        self._observed_rv, self._observed_at = updated["metadata"]["resourceVersion"], now
        self._observed_duration = cfg.lease_duration
        return True

    async def _create(self) -> bool:
        cfg = self.config
        stamp = _micro_now()
        obj = {
            "metadata": {"name": cfg.name, "namespace": cfg.namespace},
            "spec": {
                "holderIdentity": cfg.identity,
                "leaseDurationSeconds": math.ceil(cfg.lease_duration),
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": 0,
            },
        }
        try:
            created = await self.client.create(LEASES, obj, cfg.namespace)
        except ApiError as e:
            if e.code == 409:
                return False
            raise
        self._observed_rv, self._observed_at = created["metadata"]["resourceVersion"], time.monotonic()
        return True

    async def _attempt(self, timeout: float) -> bool:
        """An attempt that cannot outlive ``timeout``; API trouble counts as a failed attempt."""
        try:
            return await asyncio.wait_for(self._try_acquire_or_renew(), max(timeout, 0.01))
        except (ApiError, ApiConnectionError, TimeoutError) as e:
            log.debug("leader election attempt for %s failed: %s", self.config.name, e)
            return False

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Campaign, lead while holding the Lease, repeat; release it when cancelled.

        Returns (after releasing) if ``lead()`` returns by itself; re-raises if it fails.
        """
        try:
            while True:
                if not await self._hold(await self._acquire()):
                    return
        finally:
            if self.leading:
                self._stopped("shutting down")
                with contextlib.suppress(Exception):
                    await self.release()

    async def _acquire(self) -> float:
        """Campaign until we hold the Lease; return (loop time) when the winning write was sent."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        log.info("attempting to acquire leader lease %s/%s as %s", cfg.namespace, cfg.name, cfg.identity)
        while True:
            sent = loop.time()
            if await self._attempt(cfg.renew_deadline):
                return sent
            # Jitter (client-go's JitterFactor 1.2) keeps candidates from writing in lockstep.
            await asyncio.sleep(cfg.retry_period * (1 + random.random() * 1.2))

    async def _hold(self, last_renew: float) -> bool:
        """Run the work while renewing; True when leadership was lost (campaign again)."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        self.leading = True
        log.info("started leading %s/%s as %s at monotonic %.3f", cfg.namespace, cfg.name, cfg.identity,
                 time.monotonic())  # fmt: skip
        task = asyncio.create_task(self._lead(), name="leader")
        lost = False
        try:
            while True:
                # Every wait is cut at the renew deadline: the work must stop right on it.
                remaining = last_renew + cfg.renew_deadline - loop.time()
                if remaining <= 0:
                    lost = True
                    break
                # Wake early if the work itself ended (or crashed): leadership is then given up.
                await asyncio.wait({task}, timeout=min(cfg.retry_period, remaining))
                if task.done():
                    break
                sent = loop.time()
                if await self._attempt(last_renew + cfg.renew_deadline - sent):
                    # Counted from when the renewal was sent, not answered: it was committed
                    # after that, so followers' expiry clocks start later than ours.
                    last_renew = sent
                elif not await self._still_ours(last_renew + cfg.renew_deadline - loop.time()):
                    lost = True
                    break
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._stopped("lease lost" if lost else "work ended")
        if lost:
            return True
        await self.release()
        if not task.cancelled() and (exc := task.exception()) is not None:
            raise exc
        return False

    async def _still_ours(self, timeout: float) -> bool:
        """After a failed renew: False once someone else is recorded as the holder."""
        if timeout <= 0:
            return False
        try:
            lease = await asyncio.wait_for(
                self.client.get(LEASES, self.config.name, self.config.namespace), min(timeout, self.config.retry_period)
            )
        except (ApiError, ApiConnectionError, TimeoutError):
            return True  # unknown: keep trying until the renew deadline
        return (lease.get("spec") or {}).get("holderIdentity") == self.config.identity

    def _stopped(self, why: str) -> None:
        # Called right after the work was cancelled: nothing runs as leader past this line.
        self.leading = False
        cfg = self.config
        log.info("stopped leading %s/%s as %s at monotonic %.3f (%s)", cfg.namespace, cfg.name, cfg.identity,
                 time.monotonic(), why)  # fmt: skip
        if self._on_stopped is not None:
            self._on_stopped()

    async def release(self) -> None:
        """Give the Lease up (empty holder) if we still hold it, so a successor starts at once."""
        cfg = self.config
        try:
            lease = await asyncio.wait_for(self.client.get(LEASES, cfg.name, cfg.namespace), cfg.retry_period)
            spec = dict(lease.get("spec") or {})
            if spec.get("holderIdentity") != cfg.identity:
                return
            spec.update(holderIdentity="", leaseDurationSeconds=1, renewTime=_micro_now())
            await asyncio.wait_for(self.client.replace(LEASES, {**lease, "spec": spec}), cfg.retry_period)
            log.info("released leader lease %s/%s", cfg.namespace, cfg.name)
        except (ApiError, ApiConnectionError, TimeoutError) as e:
            log.warning("could not release leader lease %s/%s: %s", cfg.namespace, cfg.name, e)
