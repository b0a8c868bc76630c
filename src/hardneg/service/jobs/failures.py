"""The reason a failed run's record gives: the exception, with a full disk named as such.

A write that fails for lack of space surfaces as whatever the writing library raises (an
``OSError`` with ``errno`` 28, pyarrow's ``OSError`` that only says so in its text, or an error
raised while handling one). :func:`failure_reason` looks through the exception chain and, when
any link is a full disk (``ENOSPC``), an exhausted quota (``EDQUOT``) or a file-size limit
(``EFBIG``), says so first, with the code, so the client knows what to fix.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

MAX_ERROR_CHARS = 2000
DISK_ERRORS = {  # errno -> (code, strerror text, what it means for the job)
    errno.ENOSPC: ("ENOSPC", "No space left on device", "the disk is full"),
    errno.EDQUOT: ("EDQUOT", "Disk quota exceeded", "the disk quota is used up"),
    errno.EFBIG: ("EFBIG", "File too large", "a file outgrew the file-size limit"),
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def disk_error(exc: BaseException) -> int | None:
    """The errno (``ENOSPC``, ``EDQUOT``, ``EFBIG``) when ``exc`` or its cause is one; else None."""
    for link in _chain(exc):
        if isinstance(link, OSError) and link.errno in DISK_ERRORS:
            return link.errno
        text = str(link)
        for number, (code, message, _) in DISK_ERRORS.items():
            if message in text or code in text:
                return number
    return None


def failure_reason(exc: BaseException) -> str:
    """What the failed record says, at most :data:`MAX_ERROR_CHARS` characters."""
    reason = f"{type(exc).__name__}: {exc}"
    number = disk_error(exc)
    if number is not None:
        code, _, meaning = DISK_ERRORS[number]
        reason = (
            f"out of disk space ({code}: {meaning}) while writing the job's files; nothing it "
            f"wrote was kept. Free space on the data directory and submit it again. {reason}"
        )
    return reason[:MAX_ERROR_CHARS]
