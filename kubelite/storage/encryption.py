"""Encryption at rest, as kube-apiserver does it: ``--encryption-provider-config FILE``.

The file is Kubernetes' own ``EncryptionConfiguration``::

    apiVersion: apiserver.config.k8s.io/v1
    kind: EncryptionConfiguration
    resources:
      - resources: [secrets]            # plural, or plural.group ("deployments.apps", "*.apps", "*.*")
        providers:
          - aesgcm:
              keys:
                - name: key1
                  secret: <base64 of 16, 24 or 32 random bytes>   # head -c 32 /dev/urandom | base64
          - identity: {}

``wrap_store(store, config)`` returns a Store that encrypts every value written under the listed
resources' key prefixes with the FIRST provider of their rule, and decrypts every value it returns
(get, range, delete's old value, watch events and their prev_kv, the ``current`` of a lost
compare-and-swap). Encrypted values are stored as ``k8s:enc:aesgcm:v1:<key name>:`` + 12-byte random
nonce + AES-GCM ciphertext, with the storage key as associated data, so a value copied to another
key fails authentication instead of decrypting there. Values without the ``k8s:enc:`` prefix are
plaintext (written before encryption was enabled, or by ``identity``) and read as they are.

Rotating a key (every API server must be able to read whatever any other server writes):

1. Generate a new key and add it as the SECOND key of the aesgcm provider on every server; restart
   each one. All servers can now decrypt with it, none encrypts with it yet.
2. Move the new key to the FIRST position on every server; restart each one. New writes use it.
3. Re-write every Secret so it is encrypted with the new key: ``EncryptedStore.reencrypt()`` (which
   the API server runs at start-up) rewrites each value that is not in the first provider's form.
4. Drop the old key; restart.

With a single API server, steps 1 and 2 are one restart. Enabling encryption on a cluster that has
plaintext Secrets, or disabling it (``identity`` first, the aesgcm provider kept second), is the
same procedure: step 3 rewrites the existing values. Older revisions kept for watch history hold
the previous form until compaction removes them. AES-GCM with random nonces must be rotated before
about 2^32 writes with one key (Kubernetes recommends rotating every 200,000 writes).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kubelite.api.registry import RESOURCES, ResourceType
from kubelite.storage.interface import (
    Event,
    KeyNotFoundError,
    KeyValue,
    RangeResult,
    RevisionMismatchError,
    StorageError,
    Store,
    Watch,
)

__all__ = [
    "AesGcmKey",
    "EncryptedStore",
    "EncryptionConfig",
    "EncryptionConfigError",
    "EncryptionRule",
    "Provider",
    "load_encryption_config",
    "wrap_store",
]

log = logging.getLogger(__name__)

API_VERSION = "apiserver.config.k8s.io/v1"
KIND = "EncryptionConfiguration"
ENC_PREFIX = b"k8s:enc:"
AESGCM_PREFIX = b"k8s:enc:aesgcm:v1:"
NONCE_BYTES = 12
_AES_KEY_SIZES = (16, 24, 32)
_PROVIDERS = ("aesgcm", "identity")


class EncryptionConfigError(ValueError):
    """The encryption provider config is unusable; the message is one line naming the problem."""


@dataclass(frozen=True)
class AesGcmKey:
    name: str
    secret: bytes = field(repr=False)  # never in a repr, so never in a log line
    aead: AESGCM = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "aead", AESGCM(self.secret))

    @property
    def prefix(self) -> bytes:
        return AESGCM_PREFIX + self.name.encode() + b":"


@dataclass(frozen=True)
class Provider:
    kind: str  # "aesgcm" or "identity"
    keys: tuple[AesGcmKey, ...] = ()  # aesgcm only; the first one encrypts


@dataclass(frozen=True)
class EncryptionRule:
    prefixes: tuple[str, ...]  # storage key prefixes, e.g. "/registry/core/secrets/"
    providers: tuple[Provider, ...]  # the first one encrypts writes; all are tried for reads

    def covers(self, key: str) -> bool:
        return key.startswith(self.prefixes)


@dataclass(frozen=True)
class EncryptionConfig:
    rules: tuple[EncryptionRule, ...]

    def rule_for(self, key: str) -> EncryptionRule | None:
        return next((r for r in self.rules if r.covers(key)), None)


# ---- loading ------------------------------------------------------------------------------------


def load_encryption_config(path: Path | str) -> EncryptionConfig:
    """Parse an EncryptionConfiguration file; EncryptionConfigError with a one-line message if unusable."""
    where = f"encryption provider config {path}"
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise EncryptionConfigError(f"{where}: no such file") from None
    except OSError as e:
        raise EncryptionConfigError(f"{where}: cannot read: {e.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise EncryptionConfigError(f"{where}: invalid YAML{at}: {getattr(e, 'problem', None) or e}") from None
    try:
        return parse_encryption_config(doc)
    except EncryptionConfigError as e:
        raise EncryptionConfigError(f"{where}: {e}") from None


def parse_encryption_config(doc: Any) -> EncryptionConfig:
    if not isinstance(doc, dict):
        raise EncryptionConfigError("must be a YAML mapping (an EncryptionConfiguration)")
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        raise EncryptionConfigError(
            f"apiVersion/kind must be {API_VERSION} {KIND}, got {doc.get('apiVersion')} {doc.get('kind')}"
        )
    entries = doc.get("resources")
    if not isinstance(entries, list) or not entries:
        raise EncryptionConfigError("resources: must be a non-empty list")
    rules: list[EncryptionRule] = []
    seen: dict[str, str] = {}  # prefix -> the path that claimed it
    for i, entry in enumerate(entries):
        path = f"resources[{i}]"
        if not isinstance(entry, dict):
            raise EncryptionConfigError(f"{path}: must be a mapping with resources and providers")
        names = entry.get("resources")
        if not isinstance(names, list) or not names:
            raise EncryptionConfigError(f"{path}.resources: must be a non-empty list of resource names")
        prefixes: list[str] = []
        for j, name in enumerate(names):
            for rt in _resolve(f"{path}.resources[{j}]", name):
                prefix = rt.key_prefix()
                if prefix in seen:
                    raise EncryptionConfigError(f"{path}.resources[{j}]: {name} is already listed at {seen[prefix]}")
                seen[prefix] = f"{path}.resources[{j}]"
                prefixes.append(prefix)
        providers = entry.get("providers")
        if not isinstance(providers, list) or not providers:
            raise EncryptionConfigError(f"{path}.providers: must be a non-empty list")
        parsed = tuple(_provider(f"{path}.providers[{k}]", p) for k, p in enumerate(providers))
        rules.append(EncryptionRule(tuple(prefixes), parsed))
    return EncryptionConfig(tuple(rules))


def _resolve(path: str, name: Any) -> list[ResourceType]:
    """A resource name as EncryptionConfiguration spells it: plural[.group], *.group or *.*."""
    if not isinstance(name, str) or not name:
        raise EncryptionConfigError(f"{path}: must be a resource name such as secrets")
    plural, _, group = name.partition(".")
    if plural == "*" and group == "*":
        return list(RESOURCES)
    if plural == "*":
        found = [r for r in RESOURCES if r.group == group]
    else:
        found = [r for r in RESOURCES if r.plural == plural and r.group == group]
    if not found:
        raise EncryptionConfigError(f"{path}: unknown resource {name!r} (e.g. secrets, configmaps, deployments.apps)")
    return found


def _provider(path: str, spec: Any) -> Provider:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise EncryptionConfigError(f"{path}: must name exactly one provider (aesgcm or identity)")
    (kind, body), = spec.items()
    if kind not in _PROVIDERS:
        raise EncryptionConfigError(f"{path}: unsupported provider {kind!r} (kubelite supports aesgcm and identity)")
    if kind == "identity":
        return Provider("identity")
    keys = body.get("keys") if isinstance(body, dict) else None
    if not isinstance(keys, list) or not keys:
        raise EncryptionConfigError(f"{path}.aesgcm.keys: must be a non-empty list of {{name, secret}}")
    parsed: list[AesGcmKey] = []
    for i, key in enumerate(keys):
        kpath = f"{path}.aesgcm.keys[{i}]"
        if not isinstance(key, dict):
            raise EncryptionConfigError(f"{kpath}: must be a mapping with name and secret")
        name = key.get("name")
        if not isinstance(name, str) or not name or ":" in name:
            raise EncryptionConfigError(f"{kpath}.name: must be a non-empty name without ':'")
        if any(k.name == name for k in parsed):
            raise EncryptionConfigError(f"{kpath}.name: duplicate key name {name!r}")
        secret = key.get("secret")
        try:
            raw = base64.b64decode(secret, validate=True) if isinstance(secret, str) else None
        except (binascii.Error, ValueError):
            raw = None
        if raw is None:
            raise EncryptionConfigError(f"{kpath}.secret: must be base64 (e.g. head -c 32 /dev/urandom | base64)")
        if len(raw) not in _AES_KEY_SIZES:
            raise EncryptionConfigError(f"{kpath}.secret: must decode to 16, 24 or 32 bytes, got {len(raw)}")
        parsed.append(AesGcmKey(name, raw))
    return Provider("aesgcm", tuple(parsed))


# ---- the Store wrapper --------------------------------------------------------------------------


def wrap_store(store: Store, config: EncryptionConfig) -> EncryptedStore:
    return EncryptedStore(store, config)


class EncryptedStore(Store):
    """A Store that encrypts values at rest for the configured key prefixes; everything else passes through."""

    def __init__(self, inner: Store, config: EncryptionConfig) -> None:
        self.inner = inner
        self.config = config
        self.url = inner.url
        # Every aesgcm key by name, the rule's own first: reads find keys of any rule, so a resource
        # dropped from the config still decrypts while it is being rewritten.
        self._all_keys = [k for r in config.rules for p in r.providers for k in p.keys]

    # -- transforms

    def encrypt(self, key: str, value: bytes) -> bytes:
        rule = self.config.rule_for(key)
        if rule is None or rule.providers[0].kind == "identity":
            return value
        k = rule.providers[0].keys[0]
        nonce = os.urandom(NONCE_BYTES)
        return k.prefix + nonce + k.aead.encrypt(nonce, value, key.encode())

    def decrypt(self, key: str, value: bytes) -> bytes:
        if not value.startswith(ENC_PREFIX):
            return value  # plaintext: identity, or written before encryption was enabled
        if not value.startswith(AESGCM_PREFIX):
            provider = value[len(ENC_PREFIX):].split(b":", 1)[0].decode(errors="replace")
            raise StorageError(f"cannot decrypt {key}: encrypted by provider {provider!r}, which kubelite does not support")
        name, sep, sealed = value[len(AESGCM_PREFIX):].partition(b":")
        if not sep or len(sealed) < NONCE_BYTES + 16:
            raise StorageError(f"cannot decrypt {key}: malformed aesgcm value")
        candidates = [k for k in self._candidates(key) if k.name.encode() == name]
        if not candidates:
            raise StorageError(
                f"cannot decrypt {key}: it was encrypted with aesgcm key {name.decode(errors='replace')!r}, "
                "which is not in the encryption provider config"
            )
        nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
        for k in candidates:
            try:
                return k.aead.decrypt(nonce, ciphertext, key.encode())
            except InvalidTag:
                continue
        raise StorageError(
            f"cannot decrypt {key}: authentication failed with aesgcm key {name.decode(errors='replace')!r} "
            "(the value was altered, or copied from another key)"
        )

    def is_stale(self, key: str, value: bytes) -> bool:
        """True if ``value`` is not in the form a write of ``key`` would produce now (needs a rewrite)."""
        rule = self.config.rule_for(key)
        if rule is None or rule.providers[0].kind == "identity":
            return value.startswith(ENC_PREFIX)
        return not value.startswith(rule.providers[0].keys[0].prefix)

    def _candidates(self, key: str) -> Iterable[AesGcmKey]:
        rule = self.config.rule_for(key)
        own = [k for p in rule.providers for k in p.keys] if rule else []
        return [*own, *(k for k in self._all_keys if k not in own)]

    def _kv(self, kv: KeyValue) -> KeyValue:
        plain = self.decrypt(kv.key, kv.value)
        return kv if plain is kv.value else dataclasses.replace(kv, value=plain)

    def _event(self, event: Event) -> Event:
        prev = self._kv(event.prev_kv) if event.prev_kv is not None else None
        return dataclasses.replace(event, kv=self._kv(event.kv), prev_kv=prev)

    def _mismatch(self, e: RevisionMismatchError) -> RevisionMismatchError:
        # Callers retry from e.current without another read, so it must be plaintext too.
        current = self._kv(e.current) if e.current is not None else None
        return RevisionMismatchError(e.key, e.expected, current)

    # -- Store

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def current_revision(self) -> int:
        return await self.inner.current_revision()

    async def compact_revision(self) -> int:
        return await self.inner.compact_revision()

    async def get(self, key: str, revision: int = 0) -> KeyValue | None:
        kv = await self.inner.get(key, revision)
        return self._kv(kv) if kv is not None else None

    async def range(self, prefix: str, revision: int = 0, limit: int = 0, start_after: str = "") -> RangeResult:
        res = await self.inner.range(prefix, revision, limit, start_after)
        return dataclasses.replace(res, kvs=[self._kv(kv) for kv in res.kvs])

    async def create(self, key: str, value: bytes, lease: int = 0) -> int:
        return await self.inner.create(key, self.encrypt(key, value), lease)

    async def update(self, key: str, value: bytes, expected_revision: int, lease: int = 0) -> int:
        try:
            return await self.inner.update(key, self.encrypt(key, value), expected_revision, lease)
        except RevisionMismatchError as e:
            raise self._mismatch(e) from None

    async def delete(self, key: str, expected_revision: int = 0) -> tuple[int, KeyValue]:
        try:
            revision, old = await self.inner.delete(key, expected_revision)
        except RevisionMismatchError as e:
            raise self._mismatch(e) from None
        return revision, self._kv(old)

    async def watch(self, prefix: str, start_revision: int) -> Watch:
        return _DecryptingWatch(await self.inner.watch(prefix, start_revision), self)

    async def compact(self, revision: int) -> None:
        await self.inner.compact(revision)

    async def grant_lease(self, ttl_seconds: int) -> int:
        return await self.inner.grant_lease(ttl_seconds)

    async def keepalive_lease(self, lease_id: int) -> None:
        await self.inner.keepalive_lease(lease_id)

    async def revoke_lease(self, lease_id: int) -> None:
        await self.inner.revoke_lease(lease_id)

    # -- rotation

    async def reencrypt(self, page: int = 500) -> int:
        """Rewrite every value under a configured prefix that is not in its first provider's form.

        Safe while the API serves: each rewrite is a compare-and-swap on the value read, and a key
        written or deleted meanwhile is skipped (that write already used the current provider).
        A value that cannot be decrypted is logged and left alone. Returns how many were rewritten.
        """
        rewritten = 0
        for prefix in dict.fromkeys(p for r in self.config.rules for p in r.prefixes):
            revision, after = 0, ""
            while True:
                res = await self.inner.range(prefix, revision, page, after)
                revision = res.revision
                for kv in res.kvs:
                    if not self.is_stale(kv.key, kv.value):
                        continue
                    try:
                        plain = self.decrypt(kv.key, kv.value)
                    except StorageError as e:
                        # One lost key must not stop the others' rotation; reads of it fail loudly anyway.
                        log.warning("not re-encrypting %s: %s", kv.key, e)
                        continue
                    try:
                        await self.inner.update(kv.key, self.encrypt(kv.key, plain), kv.mod_revision, kv.lease)
                    except (RevisionMismatchError, KeyNotFoundError):
                        continue
                    rewritten += 1
                if not res.more:
                    break
                after = res.kvs[-1].key
        return rewritten


class _DecryptingWatch(Watch):
    def __init__(self, inner: Watch, store: EncryptedStore) -> None:
        self._inner = inner
        self._store = store

    async def __anext__(self) -> list[Event]:
        return [self._store._event(e) for e in await self._inner.__anext__()]

    async def close(self) -> None:
        await self._inner.close()
