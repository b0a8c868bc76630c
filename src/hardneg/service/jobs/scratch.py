"""Scratch folders (uploads in progress) that a killed process cannot leave behind.

A scratch folder ``<root>/.<random>.tmp`` holds a ``.lock`` file that the process using it keeps
``flock``-ed for the folder's whole life. The kernel drops the lock when that process ends, by
``kill -9`` too, so :func:`sweep` can tell a live folder from an abandoned one without guessing
from its age: it removes exactly the folders nobody holds. The API sweeps the uploads folder
when it starts and every worker sweeps it on its maintenance passes, so what an API killed in
the middle of an upload wrote is gone soon after, while other API processes' uploads are kept.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import uuid
from pathlib import Path

logger = logging.getLogger(__name__)

LOCK_NAME = ".lock"
SUFFIX = ".tmp"


class ScratchFolder:
    """A new folder under ``root``, locked until :meth:`remove` (or the process's end)."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        name = f".{uuid.uuid4().hex}"
        making = root / f"{name}.new"  # not swept: it gets its name once it is locked
        making.mkdir()
        self._fd: int | None = os.open(making / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.path = making.rename(root / f"{name}{SUFFIX}")

    def remove(self) -> None:
        """Delete the folder, then let go of it. Safe to call twice."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _abandoned(folder: Path) -> bool:
    """True when nobody holds ``folder``'s lock (its writer is gone, or it never had one)."""
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDWR)
    except FileNotFoundError:
        return True  # created by an older version, or the writer died before locking
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # also drops the lock we may have taken
    return True


def sweep(root: Path) -> int:
    """Remove the scratch folders under ``root`` whose process is gone; returns how many."""
    if not root.is_dir():
        return 0
    removed = 0
    for folder in root.glob(f".*{SUFFIX}"):
        if folder.is_dir() and _abandoned(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    if removed:
        logger.info("removed %d abandoned scratch folder(s) under %s", removed, root)
    return removed
