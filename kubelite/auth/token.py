"""The cluster join token ``K10<ca_hash>::server:<secret>`` (k3s' format), apart from the server side
of bootstrap so that an agent parsing its token loads none of the API machinery."""

from __future__ import annotations

from kubelite.auth.pki import ca_hash

__all__ = ["TOKEN_PREFIX", "format_token", "parse_token"]

TOKEN_PREFIX = "K10"


def format_token(ca_pem: bytes, secret: str) -> str:
    return f"{TOKEN_PREFIX}{ca_hash(ca_pem)}::server:{secret}"


def parse_token(token: str) -> tuple[str | None, str]:
    """(CA pin or None, secret) of a full ``K10...`` token or a bare secret; ValueError when malformed."""
    token = token.strip()
    if not token:
        raise ValueError("the join token is empty")
    if not token.startswith(TOKEN_PREFIX):
        return None, token  # a bare secret, as k3s accepts: the CA is then trusted on first use
    pin, sep, credentials = token[len(TOKEN_PREFIX):].partition("::")
    _user, has_user, secret = credentials.partition(":")
    if not sep or not has_user or not secret:
        raise ValueError("the join token is malformed: expected K10<ca-hash>::server:<secret>")
    try:
        if len(pin) != 64:
            raise ValueError
        bytes.fromhex(pin)
    except ValueError:
        raise ValueError("the join token's CA hash is not a sha256 hex digest") from None
    return pin.lower(), secret
