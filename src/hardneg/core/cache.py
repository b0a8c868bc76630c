"""The cache protocol shared by miners (disk) and the service (Redis).

Keys are built from everything that determines a value (corpus fingerprint, model fingerprint,
prompt version, parameters), so a changed input can never return a stale result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Protocol


class Cache(Protocol):
    """A bytes-valued key/value store. Implementations must be safe to share across threads."""

    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes) -> None: ...


def cache_key(namespace: str, parts: Mapping[str, object]) -> str:
    """``namespace:<sha256 of the canonical JSON of parts>``.

    Key order does not matter:

    >>> a = cache_key("bm25", {"k1": 1.2, "corpus": "ab"})
    >>> a == cache_key("bm25", {"corpus": "ab", "k1": 1.2})
    True
    """
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return f"{namespace}:{hashlib.sha256(canonical.encode()).hexdigest()}"
