"""Bearer API keys: required on every route but the health probes whenever keys are configured.

:class:`KeyGate` refuses a request without a valid key before any route sees it, so an
unauthenticated client never has its body read or validated (it gets 401, never a 422 about its
input); a route added later is closed unless it is named open. The route dependency
:func:`require_api_key` checks again, declares the scheme in OpenAPI and names the caller.

Every configured key is compared with ``hmac.compare_digest`` (no early exit), so the time taken
does not reveal how much of a guess was right. Keys never appear in logs or error bodies; a
client is identified by a short hash of its key (used to scope Idempotency-Keys).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

bearer = HTTPBearer(auto_error=False, description="an API key from HARDNEG_API_KEYS")
ANONYMOUS = "anonymous"
UNAUTHORIZED = {"message": "missing or invalid API key", "field": "Authorization"}


@dataclass(frozen=True)
class Principal:
    id: str  # "anonymous" when the API is open, else sha256(key)[:16]


def key_matches(token: str, keys: list[bytes]) -> bool:
    presented = token.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(presented, key)
    return matched


async def require_api_key(  # no I/O: async keeps it off the thread pool
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    keys: list[bytes] = request.app.state.api_keys
    if not keys:
        return Principal(ANONYMOUS)
    if credentials is None or not key_matches(credentials.credentials, keys):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail=UNAUTHORIZED,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Principal(hashlib.sha256(credentials.credentials.encode()).hexdigest()[:16])


def bearer_token(authorization: bytes | None) -> str | None:
    """The credentials of an ``Authorization: Bearer <token>`` header, as HTTPBearer reads it."""
    if not authorization:
        return None
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


class KeyGate:
    """ASGI middleware: 401 for any request to a closed path without a configured key."""

    def __init__(
        self,
        app: ASGIApp,
        keys: list[bytes],
        open_paths: frozenset[str],
        open_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.keys = keys
        self.open_paths = open_paths
        self.open_prefixes = open_prefixes  # routes that check a key themselves (dashboard)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys:
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        given = [value for name, value in scope.get("headers") or [] if name == b"authorization"]
        # two Authorization headers are ambiguous (layers may read different ones): refused
        if len(given) <= 1 and (path in self.open_paths or path.startswith(self.open_prefixes)):
            await self.app(scope, receive, send)
            return
        token = bearer_token(given[0]) if len(given) == 1 else None
        if token is not None and key_matches(token, self.keys):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": UNAUTHORIZED}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b"Bearer"),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})
