"""The Deployment controller: rolls a pod template out through ReplicaSets, one per template.

As Kubernetes' ``pkg/controller/deployment`` (sync.go, rolling.go, recreate.go, progress.go), one
sync per Deployment key:

* claim ReplicaSets (adopt matching orphans, release ones that stopped matching);
* find the "new" ReplicaSet, whose template equals the Deployment's apart from the
  ``pod-template-hash`` label, and create it as ``<deployment>-<hash>`` when the rollout needs it
  (a name taken by something else bumps ``status.collisionCount``, which changes the hash);
* paused, or only ``spec.replicas`` changed: resize (proportionally across ReplicaSets mid-rollout);
* RollingUpdate: grow the new ReplicaSet up to replicas + maxSurge pods, shrink old ones while at
  least replicas - maxUnavailable pods stay available; Recreate: old ones to 0, wait until no old
  pod runs, then the new one to full size;
* drop old empty ReplicaSets beyond ``revisionHistoryLimit``; write status and the Available and
  Progressing conditions (ProgressDeadlineExceeded after ``progressDeadlineSeconds``).

Pure arithmetic lives in ``deployment_util``.
"""

from __future__ import annotations

import copy
import logging
import time

from kubelite.api.selectors import LabelSelector, SelectorError, label_selector_from_dict
from kubelite.client import ApiError
from kubelite.client.informer import split_key
from kubelite.controllers import deployment_util as du
from kubelite.controllers.base import DEPLOYMENTS, PODS, REPLICASETS, Controller, Obj, controller_ref
from kubelite.controllers.podutil import (
    POD_TEMPLATE_HASH_LABEL,
    claim_dependents,
    compute_hash,
    get_condition,
    get_controller_of,
    parse_time,
    templates_equal_ignoring_hash,
)

log = logging.getLogger(__name__)


class DeploymentController(Controller):
    name = "deployment"
    primary = DEPLOYMENTS

    def setup(self) -> None:
        self.deployments = self.watch_primary()
        self.replicasets = self.watch_owned(REPLICASETS)
        self.watch_mapped(REPLICASETS, self._orphan_owners)
        # Pods only matter to Recreate, which must see the old pods gone before it scales up.
        self.pods = self.watch_mapped(PODS, self._recreate_owner_of_pod)

    # ---- event mapping --------------------------------------------------------------------------

    def _orphan_owners(self, rs: Obj) -> list[str]:
        if get_controller_of(rs) is not None:
            return []
        m = rs.get("metadata") or {}
        ns, labels = m.get("namespace"), m.get("labels") or {}
        keys = []
        for d in self.deployments.list(ns):
            try:
                if label_selector_from_dict((d.get("spec") or {}).get("selector")).matches(labels):
                    keys.append(f"{ns}/{d['metadata']['name']}")
            except SelectorError:
                continue
        return keys

    def _recreate_owner_of_pod(self, pod: Obj) -> list[str]:
        ref = get_controller_of(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return []
        ns = (pod.get("metadata") or {}).get("namespace")
        rs = self.replicasets.get(ns, str(ref.get("name")))
        dref = get_controller_of(rs) if rs is not None else None
        if dref is None or dref.get("kind") != "Deployment":
            return []
        d = self.deployments.get(ns, str(dref.get("name")))
        if d is None or du.is_rolling(d):
            return []
        return [f"{ns}/{dref['name']}"]

    # ---- sync -----------------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        cached = self.deployments.get_by_key(key)
        if cached is None:
            return
        d: Obj = copy.deepcopy({**cached, "apiVersion": DEPLOYMENTS.api_version, "kind": DEPLOYMENTS.kind})
        ns, _name = split_key(key)
        spec = d.get("spec") or {}
        try:
            selector = label_selector_from_dict(spec.get("selector"))
        except SelectorError as e:
            self.recorder.event(d, "Warning", "InvalidSelector", f"invalid selector: {e}")
            return
        if selector.empty:
            self.recorder.event(d, "Warning", "SelectingAll", "This deployment is selecting all pods. A non-empty selector is required.")
            return
        rss = await self._claim_replicasets(d, selector, ns)
        try:
            await _Sync(self, d, rss).run()
        except ApiError as e:
            if e.code != 409:
                raise
            # A write based on a cache that had not caught up: expected, and the newer object's
            # own watch event is on its way. Retry shortly without a traceback in the log.
            log.debug("deployment %s: conflict (%s), retrying", key, e.message)
            self.queue.add_after(key, 0.05)

    async def _claim_replicasets(self, d: Obj, selector: LabelSelector, ns: str | None) -> list[Obj]:
        return await claim_dependents(self.client, REPLICASETS, d, selector, self.replicasets.list(ns))


class _Sync:
    """One sync of one Deployment: a working copy of it and of its ReplicaSets."""

    def __init__(self, ctl: DeploymentController, d: Obj, rss: list[Obj]) -> None:
        self.ctl = ctl
        self.client = ctl.client
        self.recorder = ctl.recorder
        self.d = d
        self.orig_status: Obj = copy.deepcopy(d.get("status") or {})
        d.setdefault("status", {})
        self.rss: dict[str, Obj] = {rs["metadata"]["uid"]: {**rs, "apiVersion": REPLICASETS.api_version, "kind": "ReplicaSet"} for rs in rss}
        self.new_uid: str | None = None

    # ---- views ----------------------------------------------------------------------------------

    @property
    def new_rs(self) -> Obj | None:
        return self.rss.get(self.new_uid) if self.new_uid else None

    @property
    def old_rss(self) -> list[Obj]:
        return sorted((rs for uid, rs in self.rss.items() if uid != self.new_uid), key=du.created)

    @property
    def all_rss(self) -> list[Obj]:
        new = self.new_rs
        return self.old_rss + ([new] if new is not None else [])

    @property
    def name(self) -> str:
        return str(self.d["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.d["metadata"]["namespace"])

    # ---- top level ------------------------------------------------------------------------------

    async def run(self) -> None:
        d = self.d
        meta, spec = d["metadata"], d.get("spec") or {}
        if meta.get("deletionTimestamp"):
            await self.sync_new_and_status(create=False, scale=False)
            return
        self.check_paused_conditions()
        self.find_new_rs()
        if spec.get("paused"):
            await self.sync_new_and_status(create=False, scale=True)
            return
        if await self.is_scaling_event():
            await self.sync_new_and_status(create=False, scale=True)
            return
        if du.is_rolling(d):
            await self.rollout_rolling()
        else:
            await self.rollout_recreate()

    async def sync_new_and_status(self, create: bool, scale: bool) -> None:
        """Kubernetes' sync(): resize for a scaling event or while paused, then write status."""
        if not self.d["metadata"].get("deletionTimestamp"):
            await self.get_new_rs(create)
        if scale:
            await self.scale()
        if self.d.get("spec", {}).get("paused"):
            await self.cleanup()
        await self.write_status(du.calculate_status(self.all_rss, self.new_rs, self.d))

    # ---- finding and creating the new ReplicaSet --------------------------------------------

    def find_new_rs(self) -> None:
        template = (self.d.get("spec") or {}).get("template") or {}
        for rs in sorted(self.rss.values(), key=du.created):
            if templates_equal_ignoring_hash((rs.get("spec") or {}).get("template") or {}, template):
                self.new_uid = rs["metadata"]["uid"]
                return
        self.new_uid = None

    async def get_new_rs(self, create: bool) -> None:
        """Sync the new ReplicaSet's revision (or create it), and the Deployment's revision."""
        new_revision = max((du.revision(rs) for rs in self.old_rss), default=0) + 1
        existing = self.new_rs
        if existing is not None:
            rs = copy.deepcopy(existing)
            changed = du.set_new_rs_annotations(self.d, rs, new_revision, exists=True)
            min_ready = (self.d.get("spec") or {}).get("minReadySeconds", 0)
            if (rs.get("spec") or {}).get("minReadySeconds", 0) != min_ready:
                rs["spec"]["minReadySeconds"] = min_ready
                changed = True
            if changed:
                rs = await self.client.replace(REPLICASETS, rs)
                self.rss[rs["metadata"]["uid"]] = rs
            await self.set_deployment_revision(du.revision(rs))
            if du.has_progress_deadline(self.d) and get_condition(self.d, "Progressing") is None:
                du.set_condition(
                    self.d["status"], "Progressing", "True", du.FOUND_NEW_RS,
                    f'Found new replica set "{rs["metadata"]["name"]}"',
                )  # fmt: skip
            return
        if not create:
            return
        await self.create_new_rs(new_revision)

    async def create_new_rs(self, new_revision: int) -> None:
        d = self.d
        spec = d.get("spec") or {}
        collision_count = (d.get("status") or {}).get("collisionCount")
        pod_hash = compute_hash(spec.get("template") or {}, collision_count)
        template = copy.deepcopy(spec.get("template") or {})
        tmeta = template.setdefault("metadata", {})
        tmeta["labels"] = {**(tmeta.get("labels") or {}), POD_TEMPLATE_HASH_LABEL: pod_hash}
        selector = copy.deepcopy(spec.get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), POD_TEMPLATE_HASH_LABEL: pod_hash}
        replicas = du.new_rs_new_replicas(d, self.old_rss, None)
        rs_name = f"{self.name}-{pod_hash}"
        rs: Obj = {
            "apiVersion": REPLICASETS.api_version,
            "kind": "ReplicaSet",
            "metadata": {
                "name": rs_name,
                "namespace": self.namespace,
                "labels": dict(tmeta["labels"]),
                "ownerReferences": [controller_ref(d)],
            },
            "spec": {
                "replicas": replicas,
                "minReadySeconds": spec.get("minReadySeconds", 0),
                "selector": selector,
                "template": template,
            },
        }
        du.set_new_rs_annotations(d, rs, new_revision, exists=False)
        du.set_replicas_annotations(rs, du.spec_replicas(d), du.spec_replicas(d) + du.max_surge(d))
        try:
            created = await self.client.create(REPLICASETS, rs, namespace=self.namespace)
        except ApiError as e:
            if e.code != 409:
                raise
            existing = await self.client.get(REPLICASETS, rs_name, namespace=self.namespace)
            ref = get_controller_of(existing)
            same = templates_equal_ignoring_hash((existing.get("spec") or {}).get("template") or {}, spec["template"])
            if ref is not None and ref.get("uid") == d["metadata"]["uid"] and same:
                # Ours, created by an earlier sync the informer has not shown yet.
                self.rss[existing["metadata"]["uid"]] = existing
                self.new_uid = existing["metadata"]["uid"]
                return
            # A hash collision with some other ReplicaSet: a new collisionCount gives a new name.
            status = copy.deepcopy(self.orig_status)
            status["collisionCount"] = int(collision_count or 0) + 1
            await self.client.replace_status(DEPLOYMENTS, {**d, "status": status})
            raise
        self.rss[created["metadata"]["uid"]] = created
        self.new_uid = created["metadata"]["uid"]
        if replicas > 0:
            self.recorder.event(d, "Normal", "ScalingReplicaSet", f"Scaled up replica set {rs_name} to {replicas}")
        if du.has_progress_deadline(d):
            du.set_condition(d["status"], "Progressing", "True", du.NEW_RS_CREATED, f'Created new replica set "{rs_name}"')
        await self.set_deployment_revision(du.revision(created))

    async def set_deployment_revision(self, rev: int) -> None:
        annotations = self.d["metadata"].get("annotations") or {}
        if annotations.get(du.REVISION) == str(rev):
            return
        # The status subresource ignores metadata here, so the annotation goes by patch; metadata
        # does not count toward generation.
        patched = await self.client.patch(
            DEPLOYMENTS, self.name, {"metadata": {"annotations": {du.REVISION: str(rev)}}},
            namespace=self.namespace, patch_type="merge",
        )  # fmt: skip
        self.d["metadata"]["resourceVersion"] = patched["metadata"]["resourceVersion"]
        self.d["metadata"]["annotations"] = patched["metadata"].get("annotations") or {}

    # ---- scaling --------------------------------------------------------------------------------

    async def scale_rs(self, rs: Obj, n: int) -> bool:
        """Set the ReplicaSet's size (and size annotations); True if its size changed."""
        d = self.d
        new = copy.deepcopy(rs)
        old_size = du.spec_replicas(rs)
        annotations_changed = du.set_replicas_annotations(
            new, du.spec_replicas(d), du.spec_replicas(d) + du.max_surge(d)
        )
        if old_size == n and not annotations_changed:
            return False
        new["spec"]["replicas"] = n
        updated = await self.client.replace(REPLICASETS, new)
        self.rss[updated["metadata"]["uid"]] = updated
        if old_size != n:
            direction = "up" if n > old_size else "down"
            self.recorder.event(
                d, "Normal", "ScalingReplicaSet", f"Scaled {direction} replica set {rs['metadata']['name']} to {n}"
            )
        return old_size != n

    async def is_scaling_event(self) -> bool:
        """Some active ReplicaSet was sized for a different spec.replicas than the current one."""
        want = du.spec_replicas(self.d)
        for rs in self.all_rss:
            if du.spec_replicas(rs) == 0:
                continue
            desired = du.annotated_int(rs, du.DESIRED_REPLICAS)
            if desired is not None and desired != want:
                return True
        return False

    def active_or_latest(self) -> Obj | None:
        new, old = self.new_rs, self.old_rss
        if new is None and not old:
            return None
        active = [rs for rs in self.all_rss if du.spec_replicas(rs) > 0]
        if not active:
            return new if new is not None else max(old, key=du.created)
        return active[0] if len(active) == 1 else None

    async def scale(self) -> None:
        """Resize for a spec.replicas change (Kubernetes' scale(), proportional mid-rollout)."""
        d = self.d
        want = du.spec_replicas(d)
        target = self.active_or_latest()
        if target is not None:
            if du.spec_replicas(target) != want:
                await self.scale_rs(target, want)
            return
        new = self.new_rs
        if (
            new is not None
            and du.spec_replicas(new) == want
            and du.annotated_int(new, du.DESIRED_REPLICAS) == want
            and du.status_int(new, "availableReplicas") == want
        ):
            # The new ReplicaSet is saturated: the old ones are not needed any more.
            for rs in self.old_rss:
                if du.spec_replicas(rs) > 0:
                    await self.scale_rs(rs, 0)
            return
        if not du.is_rolling(d):
            return
        active = [rs for rs in self.all_rss if du.spec_replicas(rs) > 0]
        allowed = want + du.max_surge(d)
        to_add = allowed - sum(du.spec_replicas(rs) for rs in active)
        if to_add == 0:
            return
        # Growing favours the biggest and newest; shrinking the biggest and oldest.
        if to_add > 0:
            active.sort(key=lambda rs: (du.spec_replicas(rs), du.created(rs)), reverse=True)
        else:
            active.sort(key=lambda rs: (-du.spec_replicas(rs), du.created(rs)))
        added = 0
        targets: list[tuple[Obj, int]] = []
        for rs in active:
            proportion = 0
            if to_add != 0:
                fraction = du.replicaset_fraction(rs, d)
                allowed_left = to_add - added
                proportion = min(fraction, allowed_left) if to_add > 0 else max(fraction, allowed_left)
            added += proportion
            targets.append((rs, du.spec_replicas(rs) + proportion))
        leftover = to_add - added
        for i, (rs, size) in enumerate(targets):
            if i == 0 and leftover:
                size += leftover
            await self.scale_rs(rs, max(size, 0))

    # ---- RollingUpdate (rolling.go) ------------------------------------------------------------

    async def rollout_rolling(self) -> None:
        await self.get_new_rs(create=True)
        if await self.reconcile_new_rs() or await self.reconcile_old_rss():
            await self.sync_rollout_status()
            return
        if du.deployment_complete(self.d, self.orig_status):
            await self.cleanup()
        await self.sync_rollout_status()

    async def reconcile_new_rs(self) -> bool:
        new, d = self.new_rs, self.d
        if new is None:
            return False
        want, have = du.spec_replicas(d), du.spec_replicas(new)
        if have == want:
            return False
        if have > want:
            return await self.scale_rs(new, want)
        return await self.scale_rs(new, du.new_rs_new_replicas(d, self.all_rss, new))

    async def reconcile_old_rss(self) -> bool:
        d, new = self.d, self.new_rs
        if sum(du.spec_replicas(rs) for rs in self.old_rss) == 0:
            return False
        all_count = sum(du.spec_replicas(rs) for rs in self.all_rss)
        min_available = du.spec_replicas(d) - du.max_unavailable(d)
        new_unavailable = du.spec_replicas(new) - du.available_bound(new) if new is not None else 0
        max_scaled_down = all_count - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        cleaned = await self.cleanup_unhealthy(max_scaled_down)
        scaled = await self.scale_down_old_for_rolling()
        return cleaned + scaled > 0

    async def cleanup_unhealthy(self, max_cleanup: int) -> int:
        """Shrink old ReplicaSets by their unavailable pods first: losing those costs nothing."""
        total = 0
        for rs in self.old_rss:
            if total >= max_cleanup:
                break
            size, available = du.spec_replicas(rs), du.available_bound(rs)
            if size == 0 or size == available:
                continue
            count = min(max_cleanup - total, size - available)
            await self.scale_rs(rs, size - count)
            total += count
        return total

    async def scale_down_old_for_rolling(self) -> int:
        d = self.d
        min_available = du.spec_replicas(d) - du.max_unavailable(d)
        available = sum(du.available_bound(rs) for rs in self.all_rss)
        if available <= min_available:
            return 0
        budget = available - min_available
        total = 0
        for rs in self.old_rss:  # oldest first
            if total >= budget:
                break
            size = du.spec_replicas(rs)
            if size == 0:
                continue
            count = min(size, budget - total)
            await self.scale_rs(rs, size - count)
            total += count
        return total

    # ---- Recreate (recreate.go) ---------------------------------------------------------------

    async def rollout_recreate(self) -> None:
        await self.get_new_rs(create=False)
        scaled = False
        for rs in self.old_rss:
            if du.spec_replicas(rs) > 0:
                scaled = await self.scale_rs(rs, 0) or scaled
        if scaled or self.old_pods_running():
            await self.sync_rollout_status()
            return
        if self.new_rs is None:
            await self.get_new_rs(create=True)
        new = self.new_rs
        if new is not None and du.spec_replicas(new) != du.spec_replicas(self.d):
            await self.scale_rs(new, du.spec_replicas(self.d))
        if du.deployment_complete(self.d, self.orig_status):
            await self.cleanup()
        await self.sync_rollout_status()

    def old_pods_running(self) -> bool:
        """Any pod of an old ReplicaSet not yet finished, terminating ones included."""
        old = self.old_rss
        if any(du.status_int(rs, "replicas") > 0 for rs in old):
            return True
        old_uids = {rs["metadata"]["uid"] for rs in old}
        for pod in self.ctl.pods.list(self.namespace):
            ref = get_controller_of(pod)
            if ref is None or ref.get("uid") not in old_uids:
                continue
            if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                return True
        return False

    # ---- history (sync.go cleanupDeployment) --------------------------------------------------

    async def cleanup(self) -> None:
        limit = (self.d.get("spec") or {}).get("revisionHistoryLimit")
        if limit is None:
            return
        alive = [rs for rs in self.old_rss if not rs["metadata"].get("deletionTimestamp")]
        excess = len(alive) - int(limit)
        if excess <= 0:
            return
        deleted = 0
        for rs in sorted(alive, key=lambda r: (du.revision(r), du.created(r))):
            if deleted >= excess:
                break
            m = rs["metadata"]
            if (
                du.status_int(rs, "replicas") != 0
                or du.spec_replicas(rs) != 0
                or int(m.get("generation") or 0) > du.status_int(rs, "observedGeneration")
            ):
                continue
            try:
                await self.client.delete(REPLICASETS, m["name"], namespace=m["namespace"], preconditions={"uid": m["uid"]})
            except ApiError as e:
                if e.code not in (404, 409):
                    raise
            self.rss.pop(m["uid"], None)
            deleted += 1

    # ---- status and progress (progress.go) ----------------------------------------------------

    def check_paused_conditions(self) -> None:
        d = self.d
        if not du.has_progress_deadline(d):
            return
        cond = get_condition(d, "Progressing")
        if cond is not None and cond.get("reason") == du.TIMED_OUT:
            return
        paused = bool((d.get("spec") or {}).get("paused"))
        paused_cond = cond is not None and cond.get("reason") == du.PAUSED
        if paused and not paused_cond:
            du.set_condition(d["status"], "Progressing", "Unknown", du.PAUSED, "Deployment is paused")
        elif not paused and paused_cond:
            du.set_condition(d["status"], "Progressing", "Unknown", du.RESUMED, "Deployment is resumed")

    async def sync_rollout_status(self) -> None:
        d, new = self.d, self.new_rs
        status = du.calculate_status(self.all_rss, new, d)
        if not du.has_progress_deadline(d):
            du.remove_condition(status, "Progressing")
        cond = get_condition({"status": status}, "Progressing")
        new_name = new["metadata"]["name"] if new is not None else ""
        if du.has_progress_deadline(d) and not (cond is not None and cond.get("reason") == du.TIMED_OUT):
            if du.deployment_complete(d, status):
                du.set_condition(
                    status, "Progressing", "True", du.NEW_RS_AVAILABLE,
                    f'ReplicaSet "{new_name}" has successfully progressed.',
                )  # fmt: skip
            elif du.deployment_progressing({**d, "status": self.orig_status}, status):
                # Progress refreshes lastUpdateTime (the deadline counts from it), keeping the transition.
                prior = cond if cond is not None and cond.get("status") == "True" else None
                du.remove_condition(status, "Progressing")
                du.set_condition(status, "Progressing", "True", du.RS_UPDATED, f'ReplicaSet "{new_name}" is progressing.')
                if prior is not None:
                    fresh = get_condition({"status": status}, "Progressing")
                    assert fresh is not None
                    fresh["lastTransitionTime"] = prior.get("lastTransitionTime", fresh["lastTransitionTime"])
            elif du.deployment_timed_out(d, status):
                du.set_condition(
                    status, "Progressing", "False", du.TIMED_OUT, f'ReplicaSet "{new_name}" has timed out progressing.'
                )
        failure = next(
            (c for rs in self.all_rss if (c := get_condition(rs, "ReplicaFailure")) and c.get("status") == "True"),
            None,
        )
        if failure is not None:
            du.set_condition(status, "ReplicaFailure", "True", str(failure.get("reason")), str(failure.get("message")))
        else:
            du.remove_condition(status, "ReplicaFailure")
        await self.write_status(status)
        self.requeue_stuck(status)

    async def write_status(self, status: Obj) -> None:
        if status == self.orig_status:
            return
        await self.client.replace_status(DEPLOYMENTS, {**self.d, "status": status})

    def requeue_stuck(self, status: Obj) -> None:
        """Come back when the progress deadline would pass, since no event will mark it."""
        d = self.d
        cond = get_condition({"status": status}, "Progressing")
        if not du.has_progress_deadline(d) or cond is None or du.deployment_complete(d, status):
            return
        if cond.get("reason") == du.TIMED_OUT:
            return
        since = parse_time(cond.get("lastUpdateTime"))
        if since is None:
            return
        after = since + float(d["spec"]["progressDeadlineSeconds"]) - time.time()
        self.ctl.enqueue(d, after=max(after, 0.0) + 1.0)

