"""Streaming a request body to a temporary file, with limits on its size before and after
decompression.

The body goes to ``<home>/uploads/<random>/`` chunk by chunk (never whole in memory). Gzip is
recognised by its magic bytes, whatever the client says, and is decompressed *as it arrives*,
at most :data:`OUTPUT_CHUNK` bytes at a time, so that:

1. a body larger than ``max_upload_bytes`` (by its Content-Length, or once that many bytes have
   arrived) raises :class:`UploadTooLargeError`;
2. a gzip body whose decompressed size passes ``max_decompressed_bytes``, or whose ratio of
   decompressed to compressed bytes passes ``max_compression_ratio`` (once more than
   ``compression_ratio_floor_bytes`` have come out), raises it too, naming the limit: a gzip bomb
   is refused after at most that many bytes, never written in full;
3. a corrupt or truncated gzip raises :class:`BadGzipError`.

On any error the temporary folder is removed. The folder stays locked by this process while it
is in use, so the one an API killed mid-upload leaves is swept away
(``hardneg.service.jobs.scratch``).
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import anyio
from starlette.requests import Request

from hardneg.service.jobs.corpora import uploads_root
from hardneg.service.jobs.scratch import ScratchFolder
from hardneg.service.settings import Settings

GZIP_MAGIC = b"\x1f\x8b"
OUTPUT_CHUNK = 1 << 20  # decompressed bytes held in memory at once
_GZIP_WBITS = 16 + zlib.MAX_WBITS


class UploadTooLargeError(ValueError):
    def __init__(self, limit: int, message: str | None = None) -> None:
        super().__init__(message or f"upload is larger than the limit of {limit} bytes")
        self.limit = limit


class EmptyUploadError(ValueError):
    def __init__(self) -> None:
        super().__init__("the request body is empty")


class BadGzipError(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"not a valid gzip file ({reason})")


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    max_decompressed: int
    max_ratio: float
    ratio_floor: int

    @classmethod
    def of(cls, settings: Settings) -> UploadLimits:
        return cls(
            settings.max_upload_bytes,
            settings.max_decompressed_bytes,
            settings.max_compression_ratio,
            settings.compression_ratio_floor_bytes,
        )


@dataclass(frozen=True)
class Received:
    folder: Path  # the temporary folder holding the file; the caller moves or removes it
    path: Path  # the file to use: as sent (``decompress=False``) or decompressed
    size: int  # bytes as sent
    digest: str  # sha256 of the bytes as sent
    gzipped: bool  # whether ``path`` is gzipped
    scratch: ScratchFolder  # ``folder``, locked while this request owns it
    decompressed: int = 0  # bytes once decompressed (the size when not gzipped)


def declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    return int(value) if value and value.isdigit() else None


class _Sink:
    """Where the body's bytes go: the raw file, or (``decompress``) the decompressed one, with
    the decompressed size and ratio checked after every :data:`OUTPUT_CHUNK`."""

    def __init__(self, handle: IO[bytes], limits: UploadLimits, decompress: bool) -> None:
        self.handle = handle
        self.limits = limits
        self.decompress = decompress
        self.head = b""
        self.gzipped: bool | None = None  # known once two bytes have arrived
        self.inflater = zlib.decompressobj(_GZIP_WBITS)
        self.sent = 0
        self.out = 0

    def feed(self, chunk: bytes) -> None:
        self.sent += len(chunk)
        if self.gzipped is None:
            self.head += chunk
            if len(self.head) < len(GZIP_MAGIC):
                return
            self.gzipped = self.head.startswith(GZIP_MAGIC)
            chunk, self.head = self.head, b""
        if not self.gzipped:
            self.out += len(chunk)
            self.handle.write(chunk)
            return
        if not self.decompress:
            self.handle.write(chunk)
        self._inflate(chunk)

    def _inflate(self, data: bytes) -> None:
        try:
            while data:
                if self.inflater.eof:  # a further gzip member (``cat a.gz b.gz``)
                    self.inflater = zlib.decompressobj(_GZIP_WBITS)
                output = self.inflater.decompress(data, OUTPUT_CHUNK)
                self._emit(output)
                data = self.inflater.unconsumed_tail or (
                    self.inflater.unused_data if self.inflater.eof else b""
                )
        except zlib.error as exc:
            raise BadGzipError(str(exc)) from None

    def _emit(self, output: bytes) -> None:
        self.out += len(output)
        limits = self.limits
        if self.out > limits.max_decompressed:
            message = (
                "upload is larger than the limit of "
                f"{limits.max_decompressed} bytes once decompressed (max_decompressed_bytes)"
            )
            raise UploadTooLargeError(limits.max_decompressed, message)
        if self.out > limits.ratio_floor and self.out > limits.max_ratio * self.sent:
            message = (
                f"upload decompresses more than {limits.max_ratio:g} times its size "
                "(max_compression_ratio)"
            )
            raise UploadTooLargeError(limits.max_decompressed, message)
        if self.decompress:
            self.handle.write(output)

    def finish(self) -> None:
        if self.gzipped is None and self.head:  # a one-byte body
            self.gzipped = False
            self.out += len(self.head)
            self.handle.write(self.head)
        if self.gzipped:
            try:
                self._emit(self.inflater.flush())
            except zlib.error as exc:
                raise BadGzipError(str(exc)) from None
            if not self.inflater.eof:
                raise BadGzipError("the compressed stream is truncated")


async def receive(
    request: Request, home: Path, stem: str, limits: UploadLimits, decompress: bool = False
) -> Received:
    """Stream the body to ``<tmp folder>/<stem>``: as sent (``+ .gz`` when gzipped), or with
    ``decompress`` decompressed. Gzip limits are checked either way."""
    length = declared_length(request)
    if length is not None and length > limits.max_bytes:
        raise UploadTooLargeError(limits.max_bytes)
    scratch = ScratchFolder(uploads_root(home))
    folder = scratch.path
    partial = folder / "body"
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as handle:
            sink = _Sink(handle, limits, decompress)
            async for chunk in request.stream():
                if sink.sent + len(chunk) > limits.max_bytes:
                    raise UploadTooLargeError(limits.max_bytes)
                digest.update(chunk)
                await anyio.to_thread.run_sync(sink.feed, chunk)
            await anyio.to_thread.run_sync(sink.finish)
        if sink.sent == 0:
            raise EmptyUploadError()
        gzipped = bool(sink.gzipped) and not decompress
        path = folder / (f"{stem}.gz" if gzipped else stem)
        partial.rename(path)
    except BaseException:
        scratch.remove()
        raise
    return Received(
        folder, path, sink.sent, digest.hexdigest(), gzipped, scratch, decompressed=sink.out
    )


def discard(received: Received) -> None:
    received.scratch.remove()
