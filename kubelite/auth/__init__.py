"""Who is asking (authentication) and may they (authorization): the API server's security seam.

The API server authenticates every request to a :class:`UserInfo` (client certificate, bearer
token), then asks its authorizer chain about the request's :class:`Attributes`. Authorizers
answer ALLOW, DENY or NO_OPINION; the first non-NO_OPINION answer wins, as in kube-apiserver's
union authorizer (``--authorization-mode=Node,RBAC``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "ADMIN_USER",
    "ALL_AUTHENTICATED",
    "ALL_UNAUTHENTICATED",
    "ANONYMOUS",
    "APISERVER_USER",
    "KUBELET_CLIENT_USER",
    "MASTERS",
    "NODES_GROUP",
    "NODE_USER_PREFIX",
    "SA_GROUP",
    "SA_USER_PREFIX",
    "Attributes",
    "AuthenticationError",
    "Authorizer",
    "Decision",
    "UserInfo",
    "node_name_of",
]

MASTERS = "system:masters"  # the group that may do anything (admin, the in-process controllers)
ALL_AUTHENTICATED = "system:authenticated"
ALL_UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"
NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
SA_GROUP = "system:serviceaccounts"
SA_USER_PREFIX = "system:serviceaccount:"
ADMIN_USER = "admin"
APISERVER_USER = "system:apiserver"  # the loopback identity of the in-process controllers
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"  # the API server's client cert towards agents


class AuthenticationError(Exception):
    """Credentials were presented but are wrong, expired or revoked (the API answers 401)."""


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def node_name_of(user: UserInfo) -> str | None:
    """The node a node credential belongs to (``system:node:<name>`` in ``system:nodes``)."""
    if NODES_GROUP in user.groups and user.name.startswith(NODE_USER_PREFIX):
        return user.name[len(NODE_USER_PREFIX) :] or None
    return None


@dataclass(frozen=True)
class Attributes:
    """What a request does, in kube-apiserver's authorizer terms.

    ``verb`` is get, list, watch, create, update, patch, delete or deletecollection for resource
    requests (``resource_request``), and the lower-cased HTTP method for other paths.
    """

    user: UserInfo
    verb: str
    resource_request: bool
    api_group: str = ""
    api_version: str = ""
    resource: str = ""  # plural, e.g. "pods"
    subresource: str = ""  # e.g. "status", "log"
    namespace: str = ""
    name: str = ""
    path: str = ""


class Decision(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    NO_OPINION = "no-opinion"


class Authorizer(Protocol):
    async def authorize(self, attrs: Attributes) -> tuple[Decision, str]:
        """The decision and, when not ALLOW, a short reason for the 403 message."""
        ...
