"""A ``Cache`` on the local filesystem: one file per key, written atomically.

Used by the CLI's in-process path; the service swaps in its Redis implementation.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from hardneg.core.atomic import write_bytes_atomic


class DiskCache:
    """Values live at ``<root>/<namespace>/<sha256(key)[:2]>/<sha256(key)>``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        namespace = key.split(":", 1)[0] if ":" in key else "default"
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self.root / namespace / digest[:2] / digest

    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            value = path.read_bytes()
        except FileNotFoundError:
            self.misses += 1
            return None
        self.hits += 1
        return value

    def set(self, key: str, value: bytes) -> None:
        write_bytes_atomic(self._path(key), value)
