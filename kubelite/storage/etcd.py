"""``etcd://host:port[,host:port...][/prefix][?cacert=&cert=&key=&timeout=]``: etcd v3 as the datastore.

Transport: etcd's own JSON gRPC-gateway (``POST /v3/kv/range|put|txn|compaction``, the ``/v3/watch``
and ``/v3/lease/keepalive`` streams, base64 keys and values) over aiohttp, which the project
already uses. The asyncio etcd clients on PyPI (aetcd, etcd3aio, python-etcd3-async) all need
grpcio + protobuf, a large native dependency pinned to protobuf versions, for the handful of
calls below; ``etcd3`` (last release 2020, synchronous) and ``etcd3-py`` (2019) are unmaintained. The gateway
is part of every etcd >= 3.3 (the Debian 3.4 package included) and needs nothing but HTTP.

Mapping (1:1 with the interface, which was modelled on etcd):

* create -> ``txn(If CreateRevision(k) == 0 Then Put)``; update -> ``txn(If ModRevision(k) == N
  Then Put Else Range(k))`` so a lost compare-and-swap returns the current value, as
  ``RevisionMismatchError.current``; delete -> the same with ``DeleteRange(prev_kv)``.
  Unconditional update/delete compare ``CreateRevision > 0`` (the key must exist).
* range pages continue from ``start_after + "\\0"`` at the first page's revision; ``count`` is
  etcd's count of the whole prefix, asked separately (``count_only``) for later pages.
* watch -> ``/v3/watch`` from ``start_revision + 1`` with ``prev_kv``; the stream is re-opened on
  another endpoint after a connection failure, from the last delivered revision, so a member
  dying is invisible to the consumer; a compacted response ends it with CompactedError.
* compact -> ``/v3/kv/compaction`` with ``physical=false``. etcd does not report its compaction
  point, so ``compact_revision()`` probes ranges at a revision (a compacted revision is an
  error) starting from the last known point, which compaction only ever raises.
* the path of the URL, if any, is a key prefix every key is stored under (like kube-apiserver's
  ``--etcd-prefix``), so several clusters or test cases can share one etcd.

TLS: ``etcds://`` (or any ``cacert=``/``cert=``) speaks https, verifying each member against
``cacert`` (the system CAs without it) and its hostname, and presents ``cert``/``key`` to an etcd
run with ``--client-cert-auth`` (k3s' ``--datastore-cafile/-certfile/-keyfile``;
``kubelite.auth.pki.ensure_etcd_pki`` makes a matching set). Files that can't be loaded fail
``start()`` with a StorageError; a handshake refused by every member (wrong CA, no or untrusted
client certificate) raises UnavailableError saying so at once, not after the timeout.

Failure: connection errors fail over to the next endpoint; a request that cannot complete (no
quorum, no endpoint) within ``timeout`` seconds (default 5) raises UnavailableError, which the
API server turns into a 503 Status. It never waits longer than that.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

import aiohttp

from kubelite.storage._watchhub import DEFAULT_MAX_QUEUE, closed_error
from kubelite.storage.interface import (
    CompactedError,
    Event,
    EventType,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    LeaseNotFoundError,
    RangeResult,
    RevisionMismatchError,
    StorageError,
    Store,
    UnavailableError,
    Watch,
    WatchOverflowError,
)
from kubelite.streams import chunks

__all__ = ["EtcdConfig", "EtcdStore", "parse_etcd_url"]

DEFAULT_TIMEOUT = 5.0
# A watch stream this long without a byte is taken for a dead member (a powered-off machine sends no
# RST) and re-opened on the next endpoint from the last revision. Provisioned members send a progress
# notification every 5 s (deploy/etcd.py), so only a dead path is ever this quiet there.
WATCH_IDLE_TIMEOUT = 30.0
# etcd cancels a stream carrying this gRPC metadata when its member loses the leader, instead
# of leaving a watch silently stalled on a minority member (clientv3.WithRequireLeader).
_REQUIRE_LEADER = {"Grpc-Metadata-hasleader": "true"}

_COMPACTED = "required revision has been compacted"
_FUTURE = "required revision is a future revision"
_NO_LEASE = "requested lease not found"
# Errors meaning "this cluster can't answer now": no leader, quorum lost, leader changing.
_UNAVAILABLE_CODES = {4, 14}  # DEADLINE_EXCEEDED, UNAVAILABLE
_UNAVAILABLE_TEXT = ("no leader", "timed out", "leader changed", "not capable", "too many requests")


class EtcdURLError(ValueError):
    pass


@dataclass(frozen=True)
class EtcdConfig:
    endpoints: list[str]  # base URLs, http(s)://host:port
    prefix: str = ""
    timeout: float = DEFAULT_TIMEOUT
    cacert: str = ""
    cert: str = ""
    key: str = ""


def parse_etcd_url(url: str) -> EtcdConfig:
    parsed = urlparse(url)
    if parsed.scheme not in ("etcd", "etcds"):
        raise EtcdURLError(f"not an etcd URL: {url!r}")
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    hosts = [h.strip() for h in parsed.netloc.split(",") if h.strip()]
    if not hosts:
        raise EtcdURLError(f"etcd URL needs at least one host:port: {url!r}")
    tls = parsed.scheme == "etcds" or bool(query.get("cacert") or query.get("cert"))
    endpoints = []
    for host in hosts:
        if ":" not in host.rsplit("]", 1)[-1]:
            host += ":2379"
        endpoints.append(f"{'https' if tls else 'http'}://{host}")
    prefix = parsed.path.rstrip("/")
    try:
        timeout = float(query.get("timeout", DEFAULT_TIMEOUT))
    except ValueError:
        raise EtcdURLError(f"etcd URL timeout must be a number of seconds: {url!r}") from None
    if timeout <= 0:
        raise EtcdURLError(f"etcd URL timeout must be > 0: {url!r}")
    return EtcdConfig(endpoints, prefix, timeout, query.get("cacert", ""), query.get("cert", ""), query.get("key", ""))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _bytes_end(prefix: bytes) -> bytes:
    """etcd's range_end for a prefix: the prefix with its last byte below 0xff incremented."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return b"\0"  # every key
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


class _EtcdError(StorageError):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class EtcdStore(Store):
    def __init__(self, url: str, config: EtcdConfig | None = None) -> None:
        self.url = url
        self.config = config or parse_etcd_url(url)
        self._ns = self.config.prefix.encode()
        self._session: aiohttp.ClientSession | None = None
        self._current = 0  # index of the endpoint that answered last
        self._known_compact = 0  # a lower bound of the compaction point (it only rises)
        self._watches: set[_EtcdWatch] = set()
        self._closed = False

    # -- plumbing ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._check_open()
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=_ssl_context(self.config), limit=256)
            self._session = aiohttp.ClientSession(connector=connector)
        await self.current_revision()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for watch in list(self._watches):
            watch._fail(closed_error())
        if self._session is not None:
            await self._session.close()

    def _check_open(self) -> None:
        if self._closed:
            raise closed_error()

    def _key(self, key: str) -> bytes:
        return self._ns + key.encode()

    def _kv(self, raw: Mapping[str, Any]) -> KeyValue:
        return KeyValue(
            key=base64.b64decode(raw["key"])[len(self._ns) :].decode(),
            value=base64.b64decode(raw.get("value", "")),
            create_revision=int(raw.get("create_revision", 0)),
            mod_revision=int(raw.get("mod_revision", 0)),
            lease=int(raw.get("lease", 0)),
        )

    def _endpoint_order(self) -> list[str]:
        eps = self.config.endpoints
        return eps[self._current :] + eps[: self._current]

    def _failed_over(self, endpoint: str) -> None:
        """Start the next request at the endpoint after the one that failed."""
        eps = self.config.endpoints
        self._current = (eps.index(endpoint) + 1) % len(eps)

    async def _call(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST to the first endpoint that takes the connection; UnavailableError after the timeout."""
        self._check_open()
        session = self._session
        if session is None:
            raise UnavailableError("etcd store not started")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeout
        payload = json.dumps(body)
        last: Exception | None = None
        while True:
            tls_failures = 0
            for endpoint in self._endpoint_order():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise UnavailableError(f"etcd unreachable after {self.config.timeout}s: {last}")
                try:
                    async with session.post(
                        endpoint + path,
                        data=payload,
                        headers=_REQUIRE_LEADER,
                        timeout=aiohttp.ClientTimeout(total=remaining),
                    ) as resp:
                        raw = await resp.read()
                except aiohttp.ClientConnectionError as e:
                    # Refused, reset or dropped: this member is gone; try the next one.
                    last = e
                    self._failed_over(endpoint)
                    if _tls_failure(e):
                        last = UnavailableError(_tls_message(endpoint, e, self.config))
                        tls_failures += 1
                    continue
                except TimeoutError:
                    # Reached a member that could not commit (no quorum): retrying elsewhere
                    # would exceed the deadline the caller was promised.
                    self._failed_over(endpoint)
                    raise UnavailableError(f"etcd request {path} timed out after {self.config.timeout}s") from None
                if self._closed:
                    raise closed_error()
                data = _json(raw)
                if resp.status == 200 and "error" not in data:
                    return data
                err = _EtcdError(int(data.get("code", 0)), str(data.get("message") or data.get("error") or raw[:200]))
                if err.code in _UNAVAILABLE_CODES or any(t in err.message for t in _UNAVAILABLE_TEXT):
                    last = err
                    self._failed_over(endpoint)
                    continue
                raise err
            if tls_failures == len(self.config.endpoints) and isinstance(last, UnavailableError):
                # A refused handshake is configuration (CA, client certificate), not an outage:
                # say so now rather than after the timeout.
                raise last
            # Every endpoint refused: wait a little for one to come back, within the deadline.
            await asyncio.sleep(min(0.1, max(deadline - loop.time(), 0)))

    async def _read(self, path: str, body: Mapping[str, Any], revision: int = 0) -> dict[str, Any]:
        """A call whose revision errors become CompactedError / FutureRevisionError."""
        try:
            return await self._call(path, body)
        except _EtcdError as e:
            raise await self._translate(e, revision) from None

    async def _translate(self, e: _EtcdError, revision: int) -> StorageError:
        if _COMPACTED in e.message:
            return CompactedError(revision, await self.compact_revision())
        if _FUTURE in e.message:
            return FutureRevisionError(revision, await self.current_revision())
        if _NO_LEASE in e.message:
            return LeaseNotFoundError(0)
        return e

    # -- reads -------------------------------------------------------------------------------

    async def _probe(self, revision: int) -> dict[str, Any]:
        """The cheapest read at ``revision``: it fails exactly when that revision is unreadable."""
        return await self._call(
            "/v3/kv/range", {"key": _b64(self._ns or b"\0"), "revision": revision, "count_only": True}
        )

    async def current_revision(self) -> int:
        data = await self._probe(0)
        return int(data["header"]["revision"])

    async def compact_revision(self) -> int:
        low = self._known_compact
        try:
            await self._probe(max(low, 1))
            return low
        except _EtcdError as e:
            if _COMPACTED not in e.message:
                raise
        # Binary search for the lowest readable revision in (low, current].
        lo, hi = max(low, 1), await self.current_revision()
        while lo + 1 < hi:
            mid = (lo + hi) // 2
            try:
                await self._probe(mid)
                hi = mid
            except _EtcdError as e:
                if _COMPACTED not in e.message:
                    raise
                lo = mid
        self._known_compact = max(self._known_compact, hi)
        return hi

    async def get(self, key: str, revision: int = 0) -> KeyValue | None:
        data = await self._read("/v3/kv/range", {"key": _b64(self._key(key)), "revision": revision}, revision)
        kvs = data.get("kvs") or []
        return self._kv(kvs[0]) if kvs else None

    async def range(
        self, prefix: str, revision: int = 0, limit: int = 0, start_after: str = ""
    ) -> RangeResult:
        start = self._key(prefix)
        end = _bytes_end(start) if start else b"\0"
        key = self._key(start_after) + b"\0" if start_after else (start or b"\0")
        body = {"key": _b64(key), "range_end": _b64(end), "revision": revision, "limit": limit}
        data = await self._read("/v3/kv/range", body, revision)
        at = revision or int(data["header"]["revision"])
        kvs = [self._kv(kv) for kv in data.get("kvs") or []]
        count = int(data.get("count", 0))
        if start_after:
            # etcd counted from start_after on; the interface counts the whole prefix.
            counted = await self._read(
                "/v3/kv/range",
                {"key": _b64(start or b"\0"), "range_end": _b64(end), "revision": at, "count_only": True},
                at,
            )
            count = int(counted.get("count", 0))
        return RangeResult(kvs=kvs, revision=at, more=bool(data.get("more")), count=count)

    # -- writes ------------------------------------------------------------------------------

    async def _txn(self, key: bytes, compare: dict[str, Any], success: dict[str, Any]) -> dict[str, Any]:
        body = {
            "compare": [{"key": _b64(key), **compare}],
            "success": [success],
            "failure": [{"request_range": {"key": _b64(key)}}],
        }
        try:
            return await self._call("/v3/kv/txn", body)
        except _EtcdError as e:
            if _NO_LEASE in e.message:
                lease = success.get("request_put", {}).get("lease", 0)
                raise LeaseNotFoundError(int(lease)) from None
            raise

    def _lost(self, data: Mapping[str, Any], key: str, expected: int) -> StorageError:
        """The error for a failed compare: the failure branch read the key's current value."""
        kvs = (data.get("responses") or [{}])[0].get("response_range", {}).get("kvs") or []
        if not kvs:
            return KeyNotFoundError(key)
        return RevisionMismatchError(key, expected, self._kv(kvs[0]))

    @staticmethod
    def _guard(expected: int) -> dict[str, Any]:
        if expected:
            return {"target": "MOD", "result": "EQUAL", "mod_revision": expected}
        return {"target": "CREATE", "result": "GREATER", "create_revision": 0}

    async def create(self, key: str, value: bytes, lease: int = 0) -> int:
        k = self._key(key)
        put = {"request_put": {"key": _b64(k), "value": _b64(value), "lease": lease}}
        data = await self._txn(k, {"target": "CREATE", "result": "EQUAL", "create_revision": 0}, put)
        if not data.get("succeeded"):
            raise KeyExistsError(key)
        return int(data["header"]["revision"])

    async def update(self, key: str, value: bytes, expected_revision: int, lease: int = 0) -> int:
        k = self._key(key)
        put = {"request_put": {"key": _b64(k), "value": _b64(value), "lease": lease}}
        data = await self._txn(k, self._guard(expected_revision), put)
        if not data.get("succeeded"):
            raise self._lost(data, key, expected_revision)
        return int(data["header"]["revision"])

    async def delete(self, key: str, expected_revision: int = 0) -> tuple[int, KeyValue]:
        k = self._key(key)
        op = {"request_delete_range": {"key": _b64(k), "prev_kv": True}}
        data = await self._txn(k, self._guard(expected_revision), op)
        if not data.get("succeeded"):
            raise self._lost(data, key, expected_revision)
        prev = data["responses"][0]["response_delete_range"]["prev_kvs"][0]
        return int(data["header"]["revision"]), self._kv(prev)

    async def compact(self, revision: int) -> None:
        try:
            await self._call("/v3/kv/compaction", {"revision": revision, "physical": False})
        except _EtcdError as e:
            if _COMPACTED in e.message:
                return  # at or below the current compaction point: nothing to do
            if _FUTURE in e.message:
                raise FutureRevisionError(revision, await self.current_revision()) from None
            raise
        self._known_compact = max(self._known_compact, revision)

    # -- watch -------------------------------------------------------------------------------

    async def watch(self, prefix: str, start_revision: int) -> Watch:
        if start_revision:
            # Fails now, as the interface wants, if the revision is compacted or in the future.
            try:
                await self._probe(start_revision)
            except _EtcdError as e:
                raise await self._translate(e, start_revision) from None
        else:
            start_revision = await self.current_revision()  # "from now" is pinned here, not at first read
        start = self._key(prefix)
        watch = _EtcdWatch(self, start or b"\0", _bytes_end(start) if start else b"\0", start_revision)
        self._watches.add(watch)
        return watch

    # -- leases ------------------------------------------------------------------------------

    async def grant_lease(self, ttl_seconds: int) -> int:
        data = await self._call("/v3/lease/grant", {"TTL": max(1, int(ttl_seconds))})
        return int(data["ID"])

    async def keepalive_lease(self, lease_id: int) -> None:
        # A one-shot keepalive stream: etcd answers TTL 0 for an expired or unknown lease.
        data = await self._call("/v3/lease/keepalive", {"ID": lease_id})
        if int(data.get("result", {}).get("TTL", 0)) <= 0:
            raise LeaseNotFoundError(lease_id)

    async def revoke_lease(self, lease_id: int) -> None:
        try:
            await self._call("/v3/lease/revoke", {"ID": lease_id})
        except _EtcdError as e:
            if _NO_LEASE in e.message:
                raise LeaseNotFoundError(lease_id) from None
            raise


def _ssl_context(config: EtcdConfig) -> ssl.SSLContext | bool:
    """The client TLS context for ``etcds://`` (or any URL with cacert/cert): the server is verified
    against ``cacert`` (the system CAs without it), with its hostname; ``cert``/``key`` are
    presented for etcd's ``--client-cert-auth``."""
    if not config.endpoints[0].startswith("https://"):
        return True  # plain http: aiohttp never uses it
    if config.key and not config.cert:
        raise StorageError("etcd URL has key= without cert=")
    try:
        ctx = ssl.create_default_context(cafile=config.cacert or None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if config.cert:
            ctx.load_cert_chain(config.cert, config.key or None)
    except (OSError, ssl.SSLError) as e:
        given = (("cacert", config.cacert), ("cert", config.cert), ("key", config.key))
        files = ", ".join(f"{k}={v}" for k, v in given if v)
        raise StorageError(f"etcd TLS files ({files}) could not be loaded: {e}") from None
    return ctx


def _tls_failure(e: BaseException) -> bool:
    """The TLS handshake itself failed (a bad CA, a missing or refused client certificate)."""
    reason = e.__cause__ or e.__context__
    if isinstance(reason, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return False  # the peer went away mid-handshake: an outage, retried like one
    return isinstance(e, aiohttp.ClientSSLError) or isinstance(reason, ssl.SSLError)


def _tls_message(endpoint: str, e: BaseException, config: EtcdConfig) -> str:
    if config.cert:
        hint = "check cacert=, cert= and key="
    else:
        hint = "check cacert=; an etcd with --client-cert-auth needs cert= and key="
    reason = e.__cause__ or e.__context__ or e
    return f"etcd TLS handshake with {endpoint} failed: {reason} ({hint} in the etcd URL)"


def _json(raw: bytes) -> dict[str, Any]:
    """One response; a stream endpoint called once (keepalive) answers one JSON line."""
    text = raw.strip().split(b"\n", 1)[0] if raw.strip() else b"{}"
    try:
        data = json.loads(text)
    except ValueError:
        return {"error": f"not JSON: {raw[:200]!r}", "code": 0}
    return data if isinstance(data, dict) else {"error": f"unexpected response {data!r}", "code": 0}


class _EtcdWatch(Watch):
    """One etcd watch stream, read by a background task into a queue (so ``__anext__`` can be
    cancelled by a timeout without losing half a message)."""

    def __init__(self, store: EtcdStore, key: bytes, range_end: bytes, start_revision: int) -> None:
        self._store = store
        self._key = key
        self._end = range_end
        self._last = start_revision  # highest revision handed over (or queued)
        self._queue: asyncio.Queue[list[Event] | StorageError] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._error: StorageError | None = None
        self._closed = False
        self._established = False  # the current stream got its response headers
        self.idle_timeout = WATCH_IDLE_TIMEOUT

    def _fail(self, error: StorageError) -> None:
        if self._error is None and not self._closed:
            self._error = error
            self._queue.put_nowait(error)
        self._stop_task()

    def _stop_task(self) -> None:
        self._store._watches.discard(self)
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    async def __anext__(self) -> list[Event]:
        if self._closed:
            raise StopAsyncIteration
        if self._error is not None and self._queue.empty():
            raise self._error
        # Opened on first read, not in watch(): a compaction between the two then surfaces as
        # CompactedError instead of racing with etcd's replay.
        if self._task is None and self._error is None:
            self._task = asyncio.create_task(self._run(), name="etcd-watch")
        item = await self._queue.get()
        if isinstance(item, StorageError):
            raise item
        return item

    async def close(self) -> None:
        self._closed = True
        self._stop_task()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        store = self._store
        loop = asyncio.get_running_loop()
        down_since: float | None = None
        last_error: Exception | None = None
        while not self._closed:
            for endpoint in store._endpoint_order():
                try:
                    if await self._stream(endpoint):
                        return
                    down_since = None  # the stream was up, then ended: start a fresh retry budget
                except (aiohttp.ClientError, TimeoutError, _EtcdError) as e:
                    last_error = e
                    store._failed_over(endpoint)
                    if self._established:  # it was up (e.g. cut for silence): a fresh retry budget
                        down_since = None
                except StorageError as e:
                    self._fail(e)
                    return
                now = loop.time()
                down_since = down_since if down_since is not None else now
                if now - down_since > store.config.timeout:
                    self._fail(UnavailableError(f"etcd watch lost and not re-established: {last_error}"))
                    return
            await asyncio.sleep(0.1)

    async def _stream(self, endpoint: str) -> bool:
        """Read one watch stream; True when the watch is finished for good."""
        store = self._store
        session = store._session
        if session is None or store._closed:
            raise closed_error()
        body = {
            "create_request": {
                "key": _b64(self._key),
                "range_end": _b64(self._end),
                "start_revision": self._last + 1,
                "prev_kv": True,
                "progress_notify": True,
            }
        }
        self._established = False
        timeout = aiohttp.ClientTimeout(total=None, connect=store.config.timeout, sock_connect=store.config.timeout,
                                        sock_read=self.idle_timeout)  # fmt: skip
        async with session.post(
            endpoint + "/v3/watch", data=json.dumps(body), headers=_REQUIRE_LEADER, timeout=timeout
        ) as resp:
            if resp.status != 200:
                raise _EtcdError(resp.status, (await resp.read())[:200].decode(errors="replace"))
            self._established = True
            buf = b""
            async for chunk in chunks(resp.content, self.idle_timeout):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip() and self._handle(json.loads(line)):
                        return True
        return False

    def _handle(self, message: Mapping[str, Any]) -> bool:
        if "error" in message:
            err = message["error"]
            raise _EtcdError(int(err.get("code", 0)), str(err.get("message", err)))
        result = message.get("result", {})
        compacted = int(result.get("compact_revision", 0))
        if compacted:
            self._store._known_compact = max(self._store._known_compact, compacted)
            self._fail(CompactedError(self._last, compacted))
            return True
        if result.get("canceled"):
            # Lost leader (require-leader) or similar: re-open, possibly elsewhere.
            raise _EtcdError(14, str(result.get("cancel_reason", "watch canceled")))
        batch: list[Event] = []
        for raw in result.get("events") or []:
            kv = self._store._kv(raw["kv"])
            if kv.mod_revision <= self._last:
                continue  # already delivered before a re-connect
            prev = self._store._kv(raw["prev_kv"]) if raw.get("prev_kv") else None
            if raw.get("type") == "DELETE":
                # The interface's DELETE carries the old value and create revision, at the
                # deletion's revision (etcd's kv there is an empty tombstone).
                old = prev or kv
                kv = KeyValue(kv.key, old.value, old.create_revision, kv.mod_revision, old.lease)
                batch.append(Event(EventType.DELETE, kv, prev))
            else:
                batch.append(Event(EventType.PUT, kv, prev))
        if batch:
            if self._queue.qsize() >= DEFAULT_MAX_QUEUE:
                # Bounded memory, as the local drivers: a consumer this far behind re-lists.
                self._fail(WatchOverflowError(f"watch fell behind by {self._queue.qsize()} batches"))
                return True
            self._last = batch[-1].revision
            self._queue.put_nowait(batch)
        return False
