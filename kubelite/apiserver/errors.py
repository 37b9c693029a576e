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
