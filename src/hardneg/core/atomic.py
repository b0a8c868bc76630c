"""Write files and folders under a temporary name, then rename into place.

A crash or cancellation leaves either the old artifact or nothing, never half a file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success rename it over ``target``.

    Works for a file or a folder written at the yielded path. On error the temp path is removed.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f"{suffix}.tmp", dir=target.parent
    )
    os.close(fd)
    temp = Path(name)
    temp.unlink()
    try:
        yield temp
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        temp.replace(target)
    finally:
        if temp.is_dir():
            shutil.rmtree(temp, ignore_errors=True)
        elif temp.exists():
            temp.unlink()


def write_bytes_atomic(target: Path, data: bytes) -> None:
    with atomic_path(target) as temp:
        temp.write_bytes(data)


def write_text_atomic(target: Path, text: str) -> None:
    write_bytes_atomic(target, text.encode("utf-8"))
