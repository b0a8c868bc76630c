"""Streaming a request body to a temporary file, with a size limit.

The body goes to ``<home>/uploads/<random>/`` chunk by chunk (never whole in memory); a body
larger than the limit (by its Content-Length, or once that many bytes have arrived) raises
:class:`UploadTooLargeError` and the temporary folder is removed. Gzip is recognised by its magic
bytes, whatever the client says. The folder stays locked by this process while it is in use, so
the one an API killed mid-upload leaves is swept away (``hardneg.service.jobs.scratch``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import anyio
from starlette.requests import Request

from hardneg.service.jobs.corpora import uploads_root
from hardneg.service.jobs.scratch import ScratchFolder

GZIP_MAGIC = b"\x1f\x8b"


class UploadTooLargeError(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"upload is larger than the limit of {limit} bytes")
        self.limit = limit


class EmptyUploadError(ValueError):
    def __init__(self) -> None:
        super().__init__("the request body is empty")


@dataclass(frozen=True)
class Received:
    folder: Path  # the temporary folder holding the file; the caller moves or removes it
    path: Path
    size: int
    digest: str  # sha256 of the bytes as sent
    gzipped: bool
    scratch: ScratchFolder  # ``folder``, locked while this request owns it


def declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    return int(value) if value and value.isdigit() else None


async def _write(handle: IO[bytes], chunk: bytes) -> None:
    await anyio.to_thread.run_sync(handle.write, chunk)


async def receive(request: Request, home: Path, stem: str, limit: int) -> Received:
    """Stream the body to ``<tmp folder>/<stem>`` (+ ``.gz`` when gzipped)."""
    length = declared_length(request)
    if length is not None and length > limit:
        raise UploadTooLargeError(limit)
    scratch = ScratchFolder(uploads_root(home))
    folder = scratch.path
    partial = folder / "body"
    digest, size, head = hashlib.sha256(), 0, b""
    try:
        with partial.open("wb") as handle:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise UploadTooLargeError(limit)
                if len(head) < 2:
                    head += chunk[: 2 - len(head)]
                digest.update(chunk)
                await _write(handle, chunk)
        if size == 0:
            raise EmptyUploadError()
        gzipped = head == GZIP_MAGIC
        path = folder / (f"{stem}.gz" if gzipped else stem)
        partial.rename(path)
    except BaseException:
        scratch.remove()
        raise
    return Received(folder, path, size, digest.hexdigest(), gzipped, scratch)


def discard(received: Received) -> None:
    received.scratch.remove()
