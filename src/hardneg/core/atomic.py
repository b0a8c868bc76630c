"""Write files and folders under a temporary name, then rename into place.

A crash or cancellation leaves either the old artifact or nothing, never half a file.

Several processes may write the same artifact at once (two jobs building the same index): each
writes its own temporary copy, and the last one to finish wins. A folder that already exists is
swapped with the new one in a single ``renameat2(RENAME_EXCHANGE)`` where the platform has it,
so a reader always finds a complete folder at the path, never a half-deleted one; elsewhere the
old folder is deleted first and the rename retried if another writer got in between.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_PLACE_TRIES = 20


def _load_renameat2() -> Callable[..., int] | None:
    try:
        function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # not Linux, or a libc without it
        return None
    return function


_RENAMEAT2 = _load_renameat2()


def exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths atomically. False where the platform or filesystem cannot."""
    if _RENAMEAT2 is None:
        return False
    result = _RENAMEAT2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOENT, errno.EOPNOTSUPP):
        return False  # unsupported here, or ``second`` is gone: a plain rename will do
    raise OSError(code, os.strerror(code), str(second))


def _place(temp: Path, target: Path) -> None:
    """Move ``temp`` to ``target``, replacing what is there (a folder included)."""
    for _ in range(_PLACE_TRIES):
        if target.is_dir() and not target.is_symlink():
            if exchange(temp, target):
                return  # the old folder now lies at ``temp``: the caller removes it
            shutil.rmtree(target, ignore_errors=True)
        try:
            temp.replace(target)
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            # another writer put its folder at ``target`` after our check: replace that one
    raise OSError(errno.EBUSY, "other writers kept replacing the folder", str(target))


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
        _place(temp, target)
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
