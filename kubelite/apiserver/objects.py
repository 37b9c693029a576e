"""Generic REST storage: the verbs every resource shares, on top of the revision store.

This is kube-apiserver's ``registry/generic`` in one place: create (defaults, validation, server
fields), get, list (selectors, paging), update (compare-and-swap on resourceVersion), status
updates, patch, graceful delete (deletionTimestamp, finalizers, pod grace periods) and watch.
Per-kind behaviour (ClusterIP allocation, pod binding) hangs off small hooks in this module.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from kubelite.api import defaults as api_defaults
from kubelite.api import validation as api_validation
from kubelite.api.registry import RESOURCES, ResourceType, resource
from kubelite.api.selectors import FieldSelector, LabelSelector
from kubelite.apiserver import errors, ssa
from kubelite.apiserver.alloc import (
    AlreadyAllocatedError,
    NodePortAllocator,
    OutOfRangeError,
    RangeFullError,
    ServiceIPAllocator,
)
from kubelite.apiserver.config import ServerConfig
from kubelite.apiserver.meta import (
    Obj,
    decode,
    deepcopy,
    encode,
    meta,
    new_uid,
    now,
    rfc3339,
    spec_part,
    typed_json,
    typed_json_head,
)
from kubelite.auth.serviceaccount import pod_serviceaccount_name
from kubelite.storage import (
    CompactedError,
    EventType,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    RevisionMismatchError,
    Store,
)

log = logging.getLogger(__name__)

NAMESPACES = resource("", "namespaces")
PODS = resource("", "pods")
SERVICES = resource("", "services")
SERVICEACCOUNTS = resource("", "serviceaccounts")
CONFIGMAPS = resource("", "configmaps")

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
MODIFIED_MESSAGE = "the object has been modified; please apply your changes to the latest version and try again"


@dataclass
class ListOptions:
    label_selector: LabelSelector | None = None
    field_selector: FieldSelector | None = None
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""

    def matches(self, obj: Obj) -> bool:
        if self.label_selector is not None and not self.label_selector.matches(meta(obj).get("labels")):
            return False
        return self.field_selector is None or self.field_selector.matches(obj)


@dataclass
class DeleteOptions:
    propagation_policy: str | None = None
    grace_period_seconds: int | None = None
    precondition_uid: str | None = None
    precondition_rv: str | None = None
    dry_run: bool = False


@dataclass
class WriteOptions:
    dry_run: bool = False
    field_validation: str = "Warn"  # Strict | Warn | Ignore, as ?fieldValidation=
    warnings: list[str] = field(default_factory=list)
    field_manager: str = ""  # who is writing, for managedFields ("" = "unknown")
    apply: bool = False  # server-side apply: the write carries its own managedFields (see ssa.py)


def _encode_continue(revision: int, key: str) -> str:
    raw = orjson.dumps({"rv": revision, "start": key})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
        return int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise errors.bad_request(f"invalid continue token {token!r}") from None


def _parse_int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request(f"invalid {what} {value!r}: must be an integer") from None


class ObjectStore:
    """The verbs of the API, for every served resource type."""

    def __init__(self, store: Store, config: ServerConfig) -> None:
        self.store = store
        self.config = config
        self.service_ips = ServiceIPAllocator(store, config.service_cidr)
        self.node_ports = NodePortAllocator(store, *config.node_port_range)
        self._tasks: set[asyncio.Task[None]] = set()
        # Pod admission hook (kubelite.auth.serviceaccount.admit_pod), set when security is on.
        self.admit_pod: Any = None
        self.root_ca_pem = ""  # the cluster CA, published in every namespace as kube-root-ca.crt
        # key -> revision of the version this server validated and stored: an update of that
        # version re-checks the schema only where it changes (api_validation.validate(old_valid=)).
        self._validated: dict[str, int] = {}

    # ---- reads -------------------------------------------------------------------------------

    async def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        kv = await self.store.get(rt.key(namespace, name))
        if kv is None:
            raise errors.not_found(rt, name)
        return self._typed(rt, decode(kv))

    async def list(self, rt: ResourceType, namespace: str | None, opts: ListOptions) -> Obj:
        items: list[Obj] = []
        list_meta = await self._list(rt, namespace, opts, lambda kv, obj: items.append(self._typed(rt, obj)))
        return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": list_meta, "items": items}

    async def list_json(self, rt: ResourceType, namespace: str | None, opts: ListOptions) -> bytes:
        """The same list as :meth:`list`, already serialized: each item is spliced from its stored
        bytes (see :func:`meta.typed_json`) instead of being decoded and re-encoded, which is what a
        LIST of tens of thousands of objects spent its time on."""
        head = typed_json_head(rt.api_version, rt.kind)
        parts: list[bytes] = []

        def emit(kv: KeyValue, obj: Obj | None) -> None:
            raw = typed_json(kv, head)
            if raw is None:  # an older layout: decode once and serialize
                raw = orjson.dumps(self._typed(rt, obj if obj is not None else decode(kv)))
            parts.append(raw)

        list_meta = await self._list(rt, namespace, opts, emit, decode_all=False)
        return b"".join((
            b'{"kind":', orjson.dumps(rt.list_kind), b',"apiVersion":', orjson.dumps(rt.api_version),
            b',"metadata":', orjson.dumps(list_meta), b',"items":[', b",".join(parts), b"]}",
        ))  # fmt: skip

    async def _list(
        self,
        rt: ResourceType,
        namespace: str | None,
        opts: ListOptions,
        emit: Callable[[KeyValue, Any], None],
        decode_all: bool = True,
    ) -> Obj:
        """Walk the matching objects in key order, calling ``emit(kv, obj)`` for each; returns the
        list metadata. ``obj`` is the decoded object, or None when ``decode_all`` is off and no
        selector needed it decoded."""
        prefix = rt.key_prefix(namespace)
        revision, start_after = 0, ""
        if opts.continue_token:
            revision, start_after = _decode_continue(opts.continue_token)
        more, last_key, emitted = False, start_after, 0
        page = max(opts.limit, 500) if opts.limit else 0
        # Decoding dominates a selective LIST: skip objects whose bytes cannot hold the required labels.
        tokens = opts.label_selector.required_tokens() if opts.label_selector is not None else ()
        selective = opts.label_selector is not None or opts.field_selector is not None
        try:
            while True:
                res = await self.store.range(prefix, revision=revision, limit=page, start_after=last_key)
                revision = res.revision
                for kv in res.kvs:
                    last_key = kv.key
                    if tokens and not all(t in kv.value for t in tokens):
                        continue
                    obj = decode(kv) if decode_all or selective else None
                    if obj is None or opts.matches(obj):
                        emit(kv, obj)
                        emitted += 1
                        if opts.limit and emitted >= opts.limit:
                            break
                if opts.limit and emitted >= opts.limit:
                    more = res.more or kv is not res.kvs[-1]
                    break
                if not res.more:
                    break
        except CompactedError:
            raise errors.gone(
                "The provided continue parameter is too old to display a consistent list result. "
                "You can start a new list without the continue parameter."
            ) from None
        list_meta: Obj = {"resourceVersion": str(revision)}
        if more:
            list_meta["continue"] = _encode_continue(revision, last_key)
        return list_meta

    # ---- create ------------------------------------------------------------------------------

    async def create(
        self, rt: ResourceType, namespace: str | None, obj: Obj, opts: WriteOptions | None = None
    ) -> Obj:
        opts = opts or WriteOptions()
        self._check_type(rt, obj)
        m = meta(obj)
        if rt.namespaced:
            if m.get("namespace") and m["namespace"] != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            m["namespace"] = namespace
            await self._require_namespace(namespace or "")
        else:
            m.pop("namespace", None)
        if not m.get("name") and m.get("generateName"):
            m["name"] = f"{m['generateName']}{new_uid()[:5]}"
        for server_field in ("uid", "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            m.pop(server_field, None)
        m["creationTimestamp"] = rfc3339()
        m["generation"] = 1
        m["uid"] = new_uid()
        if rt.has_status:
            obj.pop("status", None)
        if rt is PODS:
            obj["status"] = {"phase": "Pending"}
            if self.admit_pod is not None:  # ServiceAccount admission: default SA, token volume
                self.admit_pod(obj, await self._serviceaccount_of(namespace, obj))
        self._handle_unknown(rt, obj, opts)
        api_defaults.apply_defaults(rt, obj)
        if not opts.apply:
            ssa.record_update(rt, None, obj, opts.field_manager)
        self._validate(rt, obj, None)
        name = m["name"]
        allocated: builtins.list[tuple[str, str]] = []
        try:
            if rt is SERVICES:
                allocated = await self._allocate_service(obj, None)
            if opts.dry_run:
                return self._typed(rt, obj)
            revision = await self.store.create(rt.key(namespace, name), encode(self._typed(rt, obj)))
            self._validated[rt.key(namespace, name)] = revision
        except KeyExistsError:
            await self._release(allocated)
            raise errors.already_exists(rt, name) from None
        except BaseException:
            await self._release(allocated)
            raise
        m["resourceVersion"] = str(revision)
        if rt is NAMESPACES:
            await self._namespace_defaults(name)
        return self._typed(rt, obj)

    async def _serviceaccount_of(self, namespace: str | None, pod: Obj) -> Obj | None:
        """The ServiceAccount a new pod names, when its automountServiceAccountToken is up to it."""
        spec = pod.get("spec")
        if not isinstance(spec, dict) or spec.get("automountServiceAccountToken") is not None:
            return None
        name = pod_serviceaccount_name(spec)
        if not isinstance(name, str) or not namespace:
            return None  # validation reports it
        try:
            return await self.get(SERVICEACCOUNTS, namespace, name)
        except errors.StatusError:
            return None  # not there (yet): mount as for the default

    async def _namespace_defaults(self, namespace: str) -> None:
        """Every namespace has a "default" ServiceAccount and the kube-root-ca.crt ConfigMap from its
        first moment, so a pod created right after its namespace can mount its token volume (the
        serviceaccount controller restores them if they are deleted later)."""
        wanted: list[tuple[ResourceType, Obj]] = [(SERVICEACCOUNTS, {"metadata": {"name": "default"}})]
        if self.root_ca_pem:
            wanted.append((CONFIGMAPS, {"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": self.root_ca_pem}}))
        for rt, obj in wanted:
            try:
                await self.create(rt, namespace, obj)
            except errors.StatusError as e:
                if e.code != 409:
                    log.warning("cannot create %s in %s: %s", rt.kind, namespace, e.message)

    # ---- update ------------------------------------------------------------------------------

    async def update(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        obj: Obj,
        subresource: str | None = None,
        opts: WriteOptions | None = None,
    ) -> Obj:
        """PUT: replace the object (or only its status), compare-and-swap on resourceVersion."""
        opts = opts or WriteOptions()
        self._check_type(rt, obj)
        m = meta(obj)
        if m.get("name") and m["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({m['name']}) does not match the name on the URL ({name})"
            )
        if rt.namespaced and m.get("namespace") and m["namespace"] != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        wanted_rv = m.get("resourceVersion") or ""
        if wanted_rv:
            _parse_int(str(wanted_rv), "metadata.resourceVersion")
        if subresource is None:
            self._handle_unknown(rt, obj, opts)

        def mutate(old: Obj) -> Obj:
            if wanted_rv and wanted_rv != meta(old)["resourceVersion"]:
                raise errors.conflict(rt, name, MODIFIED_MESSAGE)
            if subresource == "status":
                new = deepcopy(old)
                if "status" in obj:
                    new["status"] = obj["status"]
                return new
            new = deepcopy(obj)
            if rt.has_status and "status" in old:
                new["status"] = old["status"]
            elif rt.has_status:
                new.pop("status", None)
            return new

        return await self._guaranteed_update(rt, namespace, name, mutate, opts, subresource=subresource)

    async def patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        apply_patch: Any,
        subresource: str | None = None,
        opts: WriteOptions | None = None,
    ) -> Obj:
        """PATCH: ``apply_patch(old) -> new`` (the caller picks merge/JSON/strategic), retried on conflicts."""
        opts = opts or WriteOptions()

        def mutate(old: Obj) -> Obj:
            new: Obj = apply_patch(deepcopy(old))
            if not isinstance(new, dict):
                raise errors.bad_request("the patch must produce a JSON object")
            new_meta = meta(new)
            old_meta = meta(old)
            if new_meta.get("resourceVersion") not in (None, "", old_meta["resourceVersion"]):
                raise errors.conflict(rt, name, MODIFIED_MESSAGE)
            new_meta["resourceVersion"] = old_meta["resourceVersion"]
            self._check_type(rt, new)
            if subresource == "status":
                status_only = deepcopy(old)
                if "status" in new:
                    status_only["status"] = new["status"]
                else:
                    status_only.pop("status", None)
                return status_only
            self._handle_unknown(rt, new, opts)
            if rt.has_status:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            return new

        return await self._guaranteed_update(rt, namespace, name, mutate, opts, subresource=subresource)

    async def patch_internal(self, rt: ResourceType, namespace: str | None, name: str, mutate: Any) -> Obj:
        """A server-side change (pod binding) that may touch fields users cannot: no immutability checks."""
        return await self._guaranteed_update(
            rt, namespace, name, lambda old: mutate(deepcopy(old)), WriteOptions(), internal=True
        )

    async def _guaranteed_update(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        mutate: Any,
        opts: WriteOptions,
        internal: bool = False,
        subresource: str | None = None,
    ) -> Obj:
        key = rt.key(namespace, name)
        kv = await self.store.get(key)
        for _attempt in range(64):
            if kv is None:
                raise errors.not_found(rt, name)
            old = decode(kv)
            new = mutate(old)
            new = self._carry_system_fields(rt, old, new)
            if rt.has_status and "status" not in old and new.get("status") is None:
                new.pop("status", None)
            api_defaults.apply_defaults(rt, new)
            if not internal and not opts.apply:
                ssa.record_update(rt, old, new, opts.field_manager, subresource)
            if rt is SERVICES:
                _carry_service_allocations(old, new)
            self._validate(rt, new, None if internal else old, self._validated.get(key) == kv.mod_revision)
            if spec_part(new) != spec_part(old):
                meta(new)["generation"] = int(meta(old).get("generation") or 1) + 1
            if new == old:
                return self._typed(rt, old)  # a no-op write keeps its resourceVersion, as in Kubernetes
            allocated: builtins.list[tuple[str, str]] = []
            if rt is SERVICES:
                allocated = await self._allocate_service(new, old)
            if opts.dry_run:
                return self._typed(rt, new)
            finalize = meta(new).get("deletionTimestamp") and not meta(new).get("finalizers")
            try:
                if finalize:
                    revision, _ = await self.store.delete(key, kv.mod_revision)
                    self._validated.pop(key, None)
                    await self._after_delete(rt, new)
                else:
                    revision = await self.store.update(key, encode(self._typed(rt, new)), kv.mod_revision)
                    self._validated[key] = revision
            except RevisionMismatchError as e:
                await self._release(allocated)
                kv = e.current
                continue
            except KeyNotFoundError:
                await self._release(allocated)
                raise errors.not_found(rt, name) from None
            if rt is SERVICES and old is not None:
                await self._release_dropped_service_allocations(old, new)
            meta(new)["resourceVersion"] = str(revision)
            return self._typed(rt, new)
        raise errors.conflict(rt, name, "too many concurrent writers; try again")

    def _carry_system_fields(self, rt: ResourceType, old: Obj, new: Obj) -> Obj:
        """Fields only the server sets survive every client write."""
        om, nm = meta(old), meta(new)
        if nm.get("uid") and nm["uid"] != om.get("uid"):
            raise errors.StatusError(
                409,
                "Conflict",
                f"Precondition failed: UID in precondition: {nm['uid']}, UID in object meta: {om.get('uid')}",
            )
        for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
            if f in om:
                nm[f] = om[f]
            else:
                nm.pop(f, None)
        nm["name"] = om["name"]
        if rt.namespaced:
            nm["namespace"] = om["namespace"]
        if "managedFields" not in nm and "managedFields" in om:
            nm["managedFields"] = om["managedFields"]  # a body without them keeps them (ssa.record_update)
        if om.get("deletionTimestamp"):
            # Once deleting, finalizers may only be removed, never added (Kubernetes forbids additions).
            nm["finalizers"] = [f for f in nm.get("finalizers") or [] if f in (om.get("finalizers") or [])]
            if not nm["finalizers"]:
                nm.pop("finalizers")
        new["apiVersion"], new["kind"] = rt.api_version, rt.kind
        return new

    # ---- delete ------------------------------------------------------------------------------

    async def delete(
        self, rt: ResourceType, namespace: str | None, name: str, opts: DeleteOptions
    ) -> tuple[Obj, bool]:
        """Graceful deletion. Returns (object, gone): gone=False when it now waits on finalizers/grace."""
        key = rt.key(namespace, name)
        kv = await self.store.get(key)
        for _attempt in range(64):
            if kv is None:
                raise errors.not_found(rt, name)
            obj = decode(kv)
            m = meta(obj)
            if opts.precondition_uid and opts.precondition_uid != m.get("uid"):
                raise errors.conflict(
                    rt, name, f"Precondition failed: UID in precondition: {opts.precondition_uid}, UID in object meta: {m.get('uid')}"
                )
            if opts.precondition_rv and opts.precondition_rv != m.get("resourceVersion"):
                raise errors.conflict(rt, name, MODIFIED_MESSAGE)
            updated = self._begin_graceful_delete(rt, obj, opts)
            if opts.dry_run:
                return self._typed(rt, updated if updated is not None else obj), updated is None
            try:
                if updated is None:
                    await self.store.delete(key, kv.mod_revision)
                    self._validated.pop(key, None)
                    await self._after_delete(rt, obj)
                    return self._typed(rt, obj), True
                if updated == obj:
                    return self._typed(rt, obj), False
                revision = await self.store.update(key, encode(self._typed(rt, updated)), kv.mod_revision)
            except RevisionMismatchError as e:
                kv = e.current
                continue
            except KeyNotFoundError:
                raise errors.not_found(rt, name) from None
            meta(updated)["resourceVersion"] = str(revision)
            if rt is NAMESPACES:
                self._spawn(self._finalize_namespace(name))
            return self._typed(rt, updated), False
        raise errors.conflict(rt, name, "too many concurrent writers; try again")

    def _begin_graceful_delete(self, rt: ResourceType, obj: Obj, opts: DeleteOptions) -> Obj | None:
        """The object to write instead of deleting it, or None to delete it now."""
        m = meta(obj)
        finalizers = list(m.get("finalizers") or [])
        policy = opts.propagation_policy
        if policy == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        elif policy == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
        grace = 0
        if rt is PODS:
            spec = obj.get("spec") or {}
            default_grace = spec.get("terminationGracePeriodSeconds", 30)
            grace = opts.grace_period_seconds if opts.grace_period_seconds is not None else default_grace
            phase = (obj.get("status") or {}).get("phase")
            # An unbound or finished pod has no containers for an agent to stop.
            if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
                grace = 0
            grace = max(int(grace or 0), 0)
        if rt is NAMESPACES:
            finalizers = finalizers or []
            new = deepcopy(obj)
            new.setdefault("status", {})["phase"] = "Terminating"
            nm = meta(new)
            nm.setdefault("deletionTimestamp", rfc3339())
            nm["deletionGracePeriodSeconds"] = 0
            if finalizers:
                nm["finalizers"] = finalizers
            return new
        if not finalizers and grace == 0:
            return None
        new = deepcopy(obj)
        nm = meta(new)
        if finalizers:
            nm["finalizers"] = finalizers
        if not nm.get("deletionTimestamp"):
            nm["deletionTimestamp"] = rfc3339(now() + _seconds(grace))
            nm["deletionGracePeriodSeconds"] = grace
        elif grace < int(nm.get("deletionGracePeriodSeconds") or 0):
            # A second delete may only shorten the grace period.
            nm["deletionTimestamp"] = rfc3339(now() + _seconds(grace))
            nm["deletionGracePeriodSeconds"] = grace
        if grace == 0 and not finalizers:
            return None
        return new

    async def delete_collection(
        self, rt: ResourceType, namespace: str | None, list_opts: ListOptions, opts: DeleteOptions
    ) -> Obj:
        listed = await self.list(rt, namespace, ListOptions(list_opts.label_selector, list_opts.field_selector))
        items = []
        for item in listed["items"]:
            m = item["metadata"]
            try:
                obj, _ = await self.delete(rt, m.get("namespace"), m["name"], opts)
                items.append(obj)
            except errors.StatusError as e:
                if e.code != 404:
                    raise
        return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": listed["metadata"], "items": items}

    async def _after_delete(self, rt: ResourceType, obj: Obj) -> None:
        if rt is SERVICES:
            await self._release(_service_allocations(obj))

    async def _finalize_namespace(self, name: str) -> None:
        """Empty a terminating namespace, then remove it (the namespace controller's job, kept here
        so that a namespace deletion completes with the API server alone)."""
        for _round in range(600):
            remaining = 0
            for rt in _namespaced_types():
                listed = await self.list(rt, name, ListOptions())
                for item in listed["items"]:
                    remaining += 1
                    if item["metadata"].get("deletionTimestamp"):
                        continue
                    try:
                        await self.delete(rt, name, item["metadata"]["name"], DeleteOptions("Background"))
                    except errors.StatusError as e:
                        if e.code != 404:
                            log.warning("namespace %s cleanup: %s", name, e.message)
            if remaining == 0:
                break
            await asyncio.sleep(0.5)
        else:
            log.warning("namespace %s still has objects; leaving it Terminating", name)
            return
        key = NAMESPACES.key(None, name)
        kv = await self.store.get(key)
        if kv is not None:
            ns = decode(kv)
            if not meta(ns).get("finalizers"):
                try:
                    await self.store.delete(key, kv.mod_revision)
                    self._validated.pop(key, None)
                except (RevisionMismatchError, KeyNotFoundError):
                    self._spawn(self._finalize_namespace(name))

    # ---- watch -------------------------------------------------------------------------------

    async def watch(
        self,
        rt: ResourceType,
        namespace: str | None,
        opts: ListOptions,
        allow_bookmarks: bool,
        timeout: float,
    ) -> AsyncIterator[Obj]:
        """Yield watch events ({type, object}): replay after resourceVersion, then live."""
        prefix = rt.key_prefix(namespace)
        rv = opts.resource_version
        start = 0
        initial: list[Obj] = []
        if rv in ("", "0"):
            listed = await self.list(rt, namespace, ListOptions(opts.label_selector, opts.field_selector))
            start = int(listed["metadata"]["resourceVersion"])
            initial = listed["items"]
        else:
            start = _parse_int(rv, "resourceVersion")
        try:
            watch = await self.store.watch(prefix, start)
        except CompactedError as e:
            yield {"type": "ERROR", "object": errors.gone(f"too old resource version: {start} ({e.compact_revision})").to_status()}
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last_rv = start
        try:
            for obj in initial:
                yield {"type": "ADDED", "object": obj}
            next_bookmark = loop.time() + self.config.bookmark_interval
            it = watch.__aiter__()
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                wait = min(remaining, max(next_bookmark - loop.time(), 0.01)) if allow_bookmarks else remaining
                try:
                    batch = await asyncio.wait_for(it.__anext__(), wait)
                except TimeoutError:
                    batch = []
                except StopAsyncIteration:
                    return
                except CompactedError as e:
                    yield {"type": "ERROR", "object": errors.gone(str(e)).to_status()}
                    return
                for event in batch:
                    last_rv = event.revision
                    out = self._watch_event(rt, event, opts)
                    if out is not None:
                        yield out
                # Also while events that the selector drops keep coming: clients take a silent watch
                # for a dead one (client.rest.WATCH_IDLE_TIMEOUT).
                if allow_bookmarks and loop.time() >= next_bookmark:
                    next_bookmark = loop.time() + self.config.bookmark_interval
                    bookmark = {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": {"resourceVersion": str(last_rv)}}
                    yield {"type": "BOOKMARK", "object": bookmark}
        finally:
            await watch.close()

    def _watch_event(self, rt: ResourceType, event: Any, opts: ListOptions) -> Obj | None:
        kv = event.kv
        obj = decode(kv)
        obj = self._typed(rt, obj)
        if event.type is EventType.DELETE:
            return {"type": "DELETED", "object": obj} if opts.matches(obj) else None
        now_matches = opts.matches(obj)
        if opts.label_selector is None and opts.field_selector is None:
            return {"type": "ADDED" if event.created else "MODIFIED", "object": obj}
        was = False
        if not event.created and event.prev_kv is not None:
            was = opts.matches(decode(event.prev_kv))
        if now_matches:
            return {"type": "MODIFIED" if was else "ADDED", "object": obj}
        if was:
            return {"type": "DELETED", "object": obj}
        return None

    # ---- helpers -----------------------------------------------------------------------------

    def _typed(self, rt: ResourceType, obj: Obj) -> Obj:
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        return obj

    def _check_type(self, rt: ResourceType, obj: Obj) -> None:
        if not isinstance(obj, dict):
            raise errors.bad_request("the body must be a JSON object")
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if kind and kind != rt.kind:
            raise errors.bad_request(
                f"the kind of the body ({kind}) does not match the resource of the URL ({rt.kind})"
            )
        if api_version and api_version != rt.api_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version ({rt.api_version})"
            )
        if "metadata" in obj and not isinstance(obj["metadata"], dict):
            raise errors.bad_request("metadata must be an object")
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind

    def _handle_unknown(self, rt: ResourceType, obj: Obj, opts: WriteOptions) -> None:
        strict = opts.field_validation == "Strict"
        unknown = api_validation.unknown_fields(rt, obj, prune=not strict)
        if not unknown:
            return
        if strict:
            listed = ", ".join(f'unknown field "{p}"' for p in unknown)
            raise errors.bad_request(f"strict decoding error: {listed}")
        if opts.field_validation != "Ignore":
            opts.warnings.extend(f'unknown field "{p}"' for p in unknown)

    def _validate(self, rt: ResourceType, obj: Obj, old: Obj | None, old_valid: bool = False) -> None:
        problems = api_validation.validate(rt, obj, old, old_valid=old_valid)
        if problems:
            name = str(meta(obj).get("name") or "")
            causes = [{"reason": p.type, "message": p.message, "field": p.field} for p in problems]
            raise errors.invalid(rt, name, causes)

    async def _require_namespace(self, namespace: str) -> None:
        if not namespace:
            raise errors.bad_request("a namespace must be given for a namespaced resource")
        kv = await self.store.get(NAMESPACES.key(None, namespace))
        if kv is None:
            raise errors.not_found(NAMESPACES, namespace)
        if meta(decode(kv)).get("deletionTimestamp"):
            raise errors.StatusError(
                403,
                "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being terminated",
            )

    async def _allocate_service(self, svc: Obj, old: Obj | None) -> builtins.list[tuple[str, str]]:
        """Give a Service its ClusterIP and NodePorts. Returns what this call reserved, to undo on failure."""
        spec = svc.setdefault("spec", {})
        owner = f"{meta(svc).get('namespace')}/{meta(svc).get('name')}"
        reserved: list[tuple[str, str]] = []
        try:
            if spec.get("type") != "ExternalName":
                old_ip = ((old or {}).get("spec") or {}).get("clusterIP")
                ip = spec.get("clusterIP")
                if old_ip and not ip:
                    spec["clusterIP"] = old_ip
                elif ip and ip != "None" and ip != old_ip:
                    await self._claim(self.service_ips, ip, owner, "spec.clusterIP", svc)
                    reserved.append(("ip", ip))
                elif not ip:
                    ip = await self.service_ips.allocate(owner)
                    reserved.append(("ip", ip))
                    spec["clusterIP"] = ip
                if spec.get("clusterIP"):
                    spec["clusterIPs"] = [spec["clusterIP"]]
            if spec.get("type") in ("NodePort", "LoadBalancer"):
                old_ports = {
                    (p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                    for p in ((old or {}).get("spec") or {}).get("ports") or []
                }
                for i, port in enumerate(spec.get("ports") or []):
                    np = port.get("nodePort")
                    prev = old_ports.get((port.get("port"), port.get("protocol", "TCP")))
                    if np and np == prev:
                        continue
                    if np:
                        await self._claim(self.node_ports, str(np), owner, f"spec.ports[{i}].nodePort", svc)
                        reserved.append(("port", str(np)))
                    elif prev:
                        port["nodePort"] = prev
                    else:
                        value = await self.node_ports.allocate(owner)
                        reserved.append(("port", value))
                        port["nodePort"] = int(value)
        except RangeFullError as e:
            await self._release(reserved)
            raise errors.StatusError(500, "InternalError", f"failed to allocate: {e}") from None
        except BaseException:
            await self._release(reserved)
            raise
        return reserved

    async def _claim(self, alloc: Any, value: str, owner: str, field_path: str, svc: Obj) -> None:
        try:
            await alloc.claim(value, owner)
        except (OutOfRangeError, AlreadyAllocatedError) as e:
            cause = {"reason": "FieldValueInvalid", "message": f"Invalid value: {value!r}: {e}", "field": field_path}
            raise errors.invalid(SERVICES, str(meta(svc).get("name")), [cause]) from None

    async def _release(self, reserved: builtins.list[tuple[str, str]]) -> None:
        for what, value in reserved:
            await (self.service_ips if what == "ip" else self.node_ports).release(value)

    async def _release_dropped_service_allocations(self, old: Obj, new: Obj) -> None:
        kept = set(_service_allocations(new))
        await self._release([a for a in _service_allocations(old) if a not in kept])

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def bootstrap(self) -> None:
        """System namespaces and the `kubernetes` Service, as a fresh cluster has them."""
        for ns in SYSTEM_NAMESPACES:
            try:
                await self.create(NAMESPACES, None, {"metadata": {"name": ns}})
            except errors.StatusError as e:
                if e.code != 409:
                    raise
        svc = {
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {
                "clusterIP": self.service_ips.kubernetes_ip,
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": self.config.port}],
            },
        }
        if await self.store.get(SERVICES.key("default", "kubernetes")) is None:
            # The .1 address is outside the allocator's range; store it directly.
            obj = deepcopy(svc)
            obj.update({"apiVersion": "v1", "kind": "Service"})
            m = meta(obj)
            m.update({"namespace": "default", "uid": new_uid(), "creationTimestamp": rfc3339(), "generation": 1})
            api_defaults.apply_defaults(SERVICES, obj)
            obj["spec"]["clusterIPs"] = [obj["spec"]["clusterIP"]]
            try:
                await self.store.create(SERVICES.key("default", "kubernetes"), encode(obj))
            except KeyExistsError:
                pass

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _seconds(n: int) -> dt.timedelta:
    return dt.timedelta(seconds=n)


def _carry_service_allocations(old: Obj, new: Obj) -> None:
    """An update that leaves out the allocated ClusterIP/NodePorts keeps them (as kube-apiserver does)."""
    old_spec, spec = old.get("spec") or {}, new.get("spec")
    if not isinstance(spec, dict) or spec.get("type") == "ExternalName":
        return
    if not spec.get("clusterIP") and old_spec.get("clusterIP"):
        spec["clusterIP"] = old_spec["clusterIP"]
        spec["clusterIPs"] = old_spec.get("clusterIPs") or [old_spec["clusterIP"]]
    old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort") for p in old_spec.get("ports") or []}
    if spec.get("type") in ("NodePort", "LoadBalancer"):
        for port in spec.get("ports") or []:
            if isinstance(port, dict) and not port.get("nodePort"):
                prev = old_ports.get((port.get("port"), port.get("protocol", "TCP")))
                if prev:
                    port["nodePort"] = prev


def _service_allocations(svc: Obj) -> list[tuple[str, str]]:
    spec = svc.get("spec") or {}
    out: list[tuple[str, str]] = []
    ip = spec.get("clusterIP")
    if ip and ip != "None":
        out.append(("ip", ip))
    for port in spec.get("ports") or []:
        if port.get("nodePort"):
            out.append(("port", str(port["nodePort"])))
    return out


def _namespaced_types() -> list[ResourceType]:
    return [r for r in RESOURCES if r.namespaced]
