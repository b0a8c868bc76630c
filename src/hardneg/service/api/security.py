"""Bearer API keys: required on every route but the health probes whenever keys are configured.

Every configured key is compared with ``hmac.compare_digest`` (no early exit), so the time taken
does not reveal how much of a guess was right. Keys never appear in logs or error bodies; a
client is identified by a short hash of its key (used to scope Idempotency-Keys).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

bearer = HTTPBearer(auto_error=False, description="an API key from HARDNEG_API_KEYS")
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Principal:
    id: str  # "anonymous" when the API is open, else sha256(key)[:16]


def key_matches(token: str, keys: list[bytes]) -> bool:
    presented = token.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(presented, key)
    return matched


def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    keys: list[bytes] = request.app.state.api_keys
    if not keys:
        return Principal(ANONYMOUS)
    if credentials is None or not key_matches(credentials.credentials, keys):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail={"message": "missing or invalid API key", "field": "Authorization"},
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Principal(hashlib.sha256(credentials.credentials.encode()).hexdigest()[:16])
