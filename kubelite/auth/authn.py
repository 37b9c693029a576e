"""Authentication: who sent this request.

In kube-apiserver's order: a client certificate signed by the cluster CA (CN is the user, O the
groups), else a bearer token — the server's own loopback token (its in-process controllers), then
ServiceAccount tokens. A request without credentials is anonymous (the caller decides whether
that is allowed); credentials that are presented but wrong raise AuthenticationError (401).

The TLS layer accepts expired client certificates on purpose (see pki.server_ssl_context), so that
expiry is answered here as a 401 naming the problem rather than as a failed handshake.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from typing import TYPE_CHECKING, Any, Protocol

from kubelite.auth import (
    ALL_AUTHENTICATED,
    APISERVER_USER,
    MASTERS,
    AuthenticationError,
    UserInfo,
)

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["INSECURE_USER", "Authenticator", "TokenAuthenticator"]

# Who a request on the --insecure-port is (loopback only, development): the old kube-apiserver
# insecure port skipped authentication and authorization the same way.
INSECURE_USER = UserInfo("system:admin", (MASTERS, ALL_AUTHENTICATED))


class TokenAuthenticator(Protocol):
    async def authenticate(self, token: str) -> UserInfo | None:
        """The user for a token of this kind; None when the token is not one of ours."""
        ...


class Authenticator:
    def __init__(self, token_authenticators: list[TokenAuthenticator] | None = None) -> None:
        # A fresh secret per process: only this process's own controllers know it.
        self.loopback_token = secrets.token_urlsafe(32)
        self._loopback_user = UserInfo(APISERVER_USER, (MASTERS, ALL_AUTHENTICATED))
        self.token_authenticators = token_authenticators or []

    async def authenticate(self, request: web.Request) -> UserInfo | None:
        """The request's user; None when it carries no credentials at all."""
        user = self._from_certificate(request)
        if user is not None:
            return user
        header = request.headers.get("Authorization", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError("only bearer tokens and client certificates are accepted")
        if hmac.compare_digest(token.encode(), self.loopback_token.encode()):
            return self._loopback_user
        for authenticator in self.token_authenticators:
            found = await authenticator.authenticate(token)
            if found is not None:
                return found
        raise AuthenticationError("invalid bearer token")

    def _from_certificate(self, request: web.Request) -> UserInfo | None:
        transport = request.transport
        if transport is None:
            return None
        peercert: dict[str, Any] | None = transport.get_extra_info("peercert")
        if not peercert:
            return None
        from kubelite.auth.pki import identity_from_peercert

        name, groups, not_after = identity_from_peercert(peercert)
        if not_after <= dt.datetime.now(dt.UTC):
            raise AuthenticationError(f"the client certificate of {name!r} expired at {not_after.isoformat()}")
        if not name:
            raise AuthenticationError("the client certificate has no common name")
        return UserInfo(name, (*groups, ALL_AUTHENTICATED))
