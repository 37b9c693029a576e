"""API errors as Kubernetes ``Status`` objects (what every client parses)."""

from __future__ import annotations

from typing import Any

from kubelite.api.registry import ResourceType


class StatusError(Exception):
    """Raised anywhere in a request; the app turns it into a Status response with ``code``."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def to_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            status["details"] = self.details
        return status


def qualified(rt: ResourceType) -> str:
    """``deployments.apps`` / ``pods``: how Kubernetes names a resource in messages."""
    return f"{rt.plural}.{rt.group}" if rt.group else rt.plural


def _details(rt: ResourceType, name: str) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "kind": rt.plural}
    if rt.group:
        d["group"] = rt.group
    return d


def not_found(rt: ResourceType, name: str) -> StatusError:
    return StatusError(404, "NotFound", f'{qualified(rt)} "{name}" not found', _details(rt, name))


def already_exists(rt: ResourceType, name: str) -> StatusError:
    return StatusError(409, "AlreadyExists", f'{qualified(rt)} "{name}" already exists', _details(rt, name))


def conflict(rt: ResourceType, name: str, why: str) -> StatusError:
    return StatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(rt)} "{name}": {why}',
        _details(rt, name),
    )


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def invalid(rt: ResourceType, name: str, causes: list[dict[str, str]]) -> StatusError:
    summary = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
    details = _details(rt, name)
    details["kind"] = rt.kind
    details["causes"] = causes
    kind = f"{rt.kind}.{rt.group}" if rt.group else rt.kind
    return StatusError(422, "Invalid", f'{kind} "{name}" is invalid: {summary}', details)


def gone(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def unauthorized(why: str = "") -> StatusError:
    return StatusError(401, "Unauthorized", f"Unauthorized: {why}" if why else "Unauthorized")


def forbidden(attrs: Any, why: str = "") -> StatusError:
    """kube-apiserver's 403 wording, e.g. ``pods "x" is forbidden: User "u" cannot get resource "pods"
    in API group "" in the namespace "ns"``; ``attrs`` is a kubelite.auth.Attributes."""
    user = attrs.user.name
    suffix = f": {why}" if why else ""
    if not attrs.resource_request:
        return StatusError(403, "Forbidden", f'forbidden: User "{user}" cannot {attrs.verb} path "{attrs.path}"{suffix}')
    res = attrs.resource + (f"/{attrs.subresource}" if attrs.subresource else "")
    qualified_res = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    what = f'{qualified_res} "{attrs.name}"' if attrs.name else qualified_res
    where = f' in the namespace "{attrs.namespace}"' if attrs.namespace else ""
    details: dict[str, Any] = {"name": attrs.name, "kind": attrs.resource}
    if attrs.api_group:
        details["group"] = attrs.api_group
    return StatusError(
        403,
        "Forbidden",
        f'{what} is forbidden: User "{user}" cannot {attrs.verb} resource "{res}" in API group "{attrs.api_group}"{where}{suffix}',
        details,
    )


class TooManyRequests(StatusError):
    """429 with a Retry-After header (rate limit, too many watches)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(429, "TooManyRequests", message, {"retryAfterSeconds": max(1, int(retry_after + 0.999))})
        self.retry_after = max(1, int(retry_after + 0.999))
