"""Bearer-token authentication of writes, admin and (optionally) statistics.

Tokens come from the operator's ``API_TOKENS``; only their SHA-256 digests are kept in memory,
and a presented token is compared with every configured digest in constant time, so neither
the tokens nor the time taken reveal which one matched.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from starlette.requests import Request

from service.errors import ForbiddenError, UnauthorizedError

_RANK = {"editor": 1, "admin": 2}


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenAuthority:
    """Answers which role a bearer token has. Immutable; safe to share.

    Args:
        tokens: token to role (``editor`` or ``admin``).
        stats_token: a token that may read ``/stats`` and ``/metrics`` (None: anyone may).
    """

    def __init__(self, tokens: Mapping[str, str], stats_token: str | None = None) -> None:
        self._digests = [(_digest(t), role) for t, role in tokens.items()]
        self._stats_digest = _digest(stats_token) if stats_token else None

    def role_of(self, token: str) -> str | None:
        """Return the role of ``token``, or None when it is not configured."""
        given = _digest(token)
        found = None
        for digest, role in self._digests:
            if hmac.compare_digest(given, digest):
                found = role
        return found

    def require(self, request: Request, role: str) -> str:
        """Return the request's role when it is at least ``role``.

        Raises:
            UnauthorizedError: no bearer token, or an unknown one.
            ForbiddenError: a known token of a lower role.
        """
        have = self.role_of(_bearer(request))
        if have is None:
            raise UnauthorizedError("a valid bearer token is required")
        if _RANK[have] < _RANK[role]:
            raise ForbiddenError(f"this needs the {role} role")
        return have

    def require_stats(self, request: Request) -> None:
        """Admit the request to the statistics when no stats token is set, or it bears it.

        Raises:
            UnauthorizedError: a stats token is set and the request does not bear it (an admin
                token is accepted too).
        """
        if self._stats_digest is None:
            return
        token = _bearer(request)
        if (
            hmac.compare_digest(_digest(token), self._stats_digest)
            or self.role_of(token) == "admin"
        ):
            return
        raise UnauthorizedError("the statistics need the stats token")


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError("a bearer token is required")
    return token.strip()
