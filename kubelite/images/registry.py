"""A client of the OCI Distribution API over plain HTTP: pull manifests and blobs, push an archive.

Only the calls a node and ``kubelite image push`` need (distribution-spec "pull" and "push"):
``GET /v2/<name>/manifests/<ref>``, ``GET|HEAD /v2/<name>/blobs/<digest>``, ``POST
/v2/<name>/blobs/uploads/`` then a monolithic ``PUT <location>?digest=``, ``PUT /v2/<name>/manifests/<ref>``.
Every byte fetched is verified against its digest before anyone uses it. No authentication: the
cluster's registry is Debian's ``docker-registry`` on a master, reached by host:port.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from kubelite.images.errors import DigestMismatchError, RegistryError, RegistryNotFoundError
from kubelite.images.oci import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    ImageArchive,
    parse_json,
    select_platform,
    sha256_digest,
)
from kubelite.images.reference import ImageRef

__all__ = ["Manifest", "PushedImage", "RegistryClient", "push_archive"]

_ACCEPT = ", ".join((OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_MANIFEST_LIST))
_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Manifest:
    data: bytes  # exactly as served: its digest covers these bytes
    media_type: str
    digest: str


@dataclass(frozen=True, slots=True)
class PushedImage:
    ref: ImageRef  # the name in the registry: host:port/repository:tag
    digest: str


def _base_url(host: str) -> str:
    if host.startswith(("http://", "https://")):
        return host.rstrip("/")
    return f"http://{host.rstrip('/')}"


class RegistryClient:
    """One registry, given as ``host:port`` (plain HTTP) or a URL. Use as an async context manager."""

    def __init__(self, host: str, session: aiohttp.ClientSession | None = None) -> None:
        self.host = host.removeprefix("http://").removeprefix("https://").rstrip("/")
        self.base = _base_url(host)
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> RegistryClient:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=_TIMEOUT)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("RegistryClient used outside 'async with'")
        return self._session

    async def _request(self, method: str, url: str, **kw: Any) -> aiohttp.ClientResponse:
        try:
            return await self.session.request(method, url, **kw)
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise RegistryError(f"registry {self.host} unreachable: {_reason(e)}") from None

    async def _fail(self, resp: aiohttp.ClientResponse, what: str) -> RegistryError:
        body = (await resp.text(errors="replace"))[:300]
        detail = _error_detail(body)
        if resp.status == 404:
            return RegistryNotFoundError(f"{what}: not found in registry {self.host}")
        if resp.status == 401:
            return RegistryError(f"{what}: registry {self.host} requires authentication (not supported)")
        return RegistryError(f"{what}: registry {self.host} answered {resp.status} {resp.reason}{detail}")

    # --- pull ---

    async def get_manifest(self, repository: str, reference: str) -> Manifest:
        """The manifest or index named by tag or digest; raises RegistryNotFoundError if absent."""
        url = f"{self.base}/v2/{repository}/manifests/{reference}"
        what = f"manifest {repository}:{reference}" if ":" not in reference else f"manifest {repository}@{reference}"
        async with await self._request("GET", url, headers={"Accept": _ACCEPT}) as resp:
            if resp.status != 200:
                raise await self._fail(resp, what)
            data = await resp.read()
            media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
            served = resp.headers.get("Docker-Content-Digest")
        digest = sha256_digest(data)
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatchError(what, reference, digest)
        if served and served.startswith("sha256:") and served != digest:
            raise DigestMismatchError(what, served, digest)
        if media_type not in (*MANIFEST_TYPES, *INDEX_TYPES):
            media_type = str(parse_json(data, what).get("mediaType", ""))  # some servers send text/plain
        return Manifest(data, media_type, digest)

    async def resolve(self, repository: str, reference: str) -> Manifest:
        """The image manifest for this host's platform: an index is followed to its linux/amd64 entry."""
        m = await self.get_manifest(repository, reference)
        if m.media_type in INDEX_TYPES:
            desc = select_platform(parse_json(m.data, f"index {m.digest}"), f"index {repository}:{reference}")
            m = await self.get_manifest(repository, desc.digest)
        if m.media_type not in MANIFEST_TYPES:
            raise RegistryError(f"{repository}:{reference}: unsupported manifest type {m.media_type!r}")
        return m

    async def download_blob(self, repository: str, desc: Descriptor, dest: Path) -> None:
        """Stream a blob into ``dest`` verifying size and digest; ``dest`` is removed on any failure."""
        url = f"{self.base}/v2/{repository}/blobs/{desc.digest}"
        try:
            async with await self._request("GET", url) as resp:
                if resp.status != 200:
                    raise await self._fail(resp, f"blob {desc.digest} of {repository}")
                h, size = hashlib.sha256(), 0
                with dest.open("wb") as out:
                    async for chunk in resp.content.iter_chunked(_CHUNK):
                        h.update(chunk)
                        size += len(chunk)
                        if size > desc.size:
                            break
                        out.write(chunk)
            actual = "sha256:" + h.hexdigest()
            if actual != desc.digest or size != desc.size:
                raise DigestMismatchError(f"blob {desc.digest} from {self.host}/{repository}", desc.digest, actual)
        except (aiohttp.ClientError, TimeoutError) as e:
            _unlink(dest)
            raise RegistryError(f"registry {self.host}: download of {desc.digest} failed: {_reason(e)}") from None
        except BaseException:
            _unlink(dest)
            raise

    # --- push ---

    async def blob_exists(self, repository: str, digest: str) -> bool:
        async with await self._request("HEAD", f"{self.base}/v2/{repository}/blobs/{digest}") as resp:
            return resp.status == 200

    async def upload_blob(self, repository: str, desc: Descriptor, path: Path) -> None:
        """Monolithic upload: POST for a session, then PUT the whole blob with its digest."""
        async with await self._request("POST", f"{self.base}/v2/{repository}/blobs/uploads/") as resp:
            if resp.status != 202 or "Location" not in resp.headers:
                raise await self._fail(resp, f"starting the upload of {desc.digest} to {repository}")
            location = resp.headers["Location"]
        if location.startswith("/"):
            location = self.base + location
        location += ("&" if "?" in location else "?") + f"digest={desc.digest}"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)}
        with path.open("rb") as body:
            async with await self._request("PUT", location, data=body, headers=headers) as resp:
                if resp.status != 201:
                    raise await self._fail(resp, f"uploading {desc.digest} to {repository}")

    async def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        url = f"{self.base}/v2/{repository}/manifests/{reference}"
        async with await self._request("PUT", url, data=data, headers={"Content-Type": media_type}) as resp:
            if resp.status != 201:
                raise await self._fail(resp, f"pushing manifest {repository}:{reference}")
            return resp.headers.get("Docker-Content-Digest") or sha256_digest(data)


async def push_archive(
    path: Path, registry: str, progress: Callable[[str], None] | None = None
) -> list[PushedImage]:
    """Push every named image of an archive to ``registry`` (host:port) under its repository and tag.

    ``busybox:latest`` goes to ``<registry>/library/busybox:latest`` (the path a docker.io mirror
    serves it under, so nodes pulling ``busybox`` from that registry find it).
    """
    pushed: list[PushedImage] = []
    with ImageArchive(path) as archive, tempfile.TemporaryDirectory(prefix="kubelite-push-") as tmp:
        if not any(img.names for img in archive.images):
            raise RegistryError(f"{path}: the archive's images have no names to push under")
        # Verify every blob before sending anything: a corrupt archive pushes nothing, even blobs
        # the registry already has (its copy is fine, but the user's file is not).
        blobs: dict[str, Path] = {}
        for img in archive.images:
            for i, desc in enumerate([img.config, *img.layers]):
                if desc.digest not in blobs:
                    blobs[desc.digest] = Path(tmp) / f"blob-{len(blobs)}"
                    archive.copy_blob(desc, blobs[desc.digest], "config" if i == 0 else "layer")
        async with RegistryClient(registry) as client:
            for img in archive.images:
                for name in img.names:
                    repo = name.repository
                    for desc in [img.config, *img.layers]:
                        if not await client.blob_exists(repo, desc.digest):
                            await client.upload_blob(repo, desc, blobs[desc.digest])
                            if progress:
                                progress(f"pushed blob {desc.digest} ({desc.size} bytes)")
                    reference = name.tag or img.manifest_digest
                    digest = await client.put_manifest(repo, reference, img.manifest, img.media_type)
                    if digest != img.manifest_digest:
                        raise DigestMismatchError(f"manifest of {name} in {client.host}", img.manifest_digest, digest)
                    ref = ImageRef(client.host, repo, name.tag, None if name.tag else digest)
                    pushed.append(PushedImage(ref, digest))
    return pushed


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    bracket = text.rfind("[")
    detail = text[bracket + 1 :].split("]", 1)[0] if bracket >= 0 else text
    if "refused" in detail.lower() or "connect call failed" in detail.lower():
        return "connection refused"
    return detail or type(exc).__name__


def _error_detail(body: str) -> str:
    """The first error message of a distribution-spec error body, if it has one."""
    try:
        errors = parse_json(body.encode(), "error").get("errors") or []
        msg = errors[0].get("message") or errors[0].get("code")
        return f": {msg}" if msg else ""
    except Exception:
        return ""
