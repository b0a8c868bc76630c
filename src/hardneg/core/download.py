"""Download public BEIR datasets by name: resumable, checksummed, unpacked atomically."""

from __future__ import annotations

import errno
import hashlib
import logging
import re
import shutil
import socket
import ssl
import zipfile
from pathlib import Path, PurePosixPath

import httpx

from hardneg.core.atomic import atomic_path
from hardneg.core.beir import find_corpus_file
from hardneg.core.progress import Progress, no_progress

logger = logging.getLogger(__name__)

BEIR_BASE_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"

# md5 of each zip as published in the BEIR README
BEIR_MD5: dict[str, str] = {
    "scifact": "5f7d1de60b170fc8027bb7898e2efca1",
    "nfcorpus": "a89dba18a62ef92f7d323ec890a0d38d",
    "arguana": "8ad3e3c2a5867cdced806d6503f29b99",
    "fiqa": "17918ed23cd04fb15047f73e6c3bd9d9",
    "scidocs": "38121350fc3a4d2f48850f6aff52e4a9",
    "quora": "18fb154900ba42a600f84b839c173167",
    "nq": "d4d3d2e48787a744b6f6e691ff534307",
    "hotpotqa": "f412724f78b0d91183a0e86805e16114",
    "webis-touche2020": "46f650ba5a527fc69e0a6521c5a23563",
    "cqadupstack": "4e41456d7df8ee7760a7f866133bda78",
    "dbpedia-entity": "c2a39eb420a3164af735795df012ac2c",
    "fever": "5a818580227bfb4b35bb6fa46d9b6c03",
    "climate-fever": "8b66f0a9126c521bae2bde127b4dc99d",
}

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_CHUNK = 1 << 20
DEFAULT_TIMEOUT = 60.0  # seconds to connect, and between two received blocks


class DownloadError(RuntimeError):
    """The dataset could not be fetched or did not verify."""


def validate_dataset_name(name: str) -> str:
    """A BEIR dataset name: lower-case letters, digits and dashes; no paths."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"invalid dataset name {name!r}: use lower-case letters, digits and '-'")
    return name


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from (httpx wraps httpcore wraps the OSError)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def network_cause(exc: httpx.HTTPError, timeout: float | None = None) -> str:
    """Why a request failed, in a few words: an unresolvable name, a refused connection, a
    timeout, a TLS failure, or the transport's own message."""
    chain = _causes(exc)
    host = exc.request.url.host if _has_request(exc) else "the host"
    if any(isinstance(e, socket.gaierror) for e in chain) or "name or service" in str(exc).lower():
        return f"cannot resolve the host name {host!r}"
    if any(isinstance(e, ssl.SSLError) for e in chain):
        reason = next(e for e in chain if isinstance(e, ssl.SSLError))
        return f"TLS failure with {host}: {getattr(reason, 'reason', None) or reason}"
    refused = any(isinstance(e, ConnectionRefusedError) for e in chain)
    if refused or f"[Errno {errno.ECONNREFUSED}]" in str(exc):
        return f"connection refused by {host} (nothing listening on that port?)"
    if isinstance(exc, httpx.TimeoutException):
        after = f" within {timeout:g} s" if timeout is not None else ""
        what = "connect" if isinstance(exc, httpx.ConnectTimeout) else "answer"
        return f"{host} did not {what}{after} (timed out)"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _has_request(exc: httpx.HTTPError) -> bool:
    try:
        exc.request  # noqa: B018 - raises RuntimeError when the error carries no request
    except RuntimeError:
        return False
    return True


def _fetch(url: str, part: Path, progress: Progress, timeout: float) -> None:
    """``_stream`` with network failures turned into a one-line ``DownloadError`` naming the
    URL and the cause."""
    try:
        _stream(url, part, progress, timeout)
    except httpx.HTTPError as exc:
        partial = part.exists() and part.stat().st_size > 0
        kept = " (the partial download is kept; rerun to resume)" if partial else ""
        raise DownloadError(f"cannot download {url}: {network_cause(exc, timeout)}{kept}") from exc


def _stream(url: str, part: Path, progress: Progress, timeout: float) -> None:
    """Download ``url`` into ``part``, continuing from its current size when the server allows."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with httpx.stream(
        "GET", url, headers=headers, timeout=timeout, follow_redirects=True
    ) as response:
        if response.status_code == 416:  # asked past the end: the part file is already complete
            return
        if response.status_code not in (200, 206):
            reason = f" {response.reason_phrase}" if response.reason_phrase else ""
            raise DownloadError(
                f"cannot download {url}: the server answered HTTP {response.status_code}{reason}"
            )
        resumed = response.status_code == 206
        if have and not resumed:
            logger.info("server ignored the range request; starting %s over", url)
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length else 0
        done = have
        with part.open("ab" if resumed else "wb") as handle:
            for block in response.iter_bytes():  # as received, so a cut connection keeps its bytes
                handle.write(block)
                done += len(block)
                progress(done, total, "downloading")


def _safe_extract(archive: Path, destination: Path) -> None:
    with zipfile.ZipFile(archive) as zipped:
        for member in zipped.infolist():
            name = PurePosixPath(member.filename)
            if name.is_absolute() or ".." in name.parts:
                raise DownloadError(f"{archive.name}: unsafe member path {member.filename!r}")
        zipped.extractall(destination)


def download_beir(
    name: str,
    root: Path,
    base_url: str = BEIR_BASE_URL,
    md5: str | None = None,
    progress: Progress = no_progress,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Fetch ``<base_url>/<name>.zip`` into ``root/<name>`` and return that folder.

    The zip is downloaded to ``root/<name>.zip.part`` (resumed if a previous try left one),
    verified against BEIR's published checksum (``md5`` only for a name that has none), then
    unpacked into
    a temp folder that is renamed into place. An existing dataset folder is returned as is.
    """
    validate_dataset_name(name)
    target = root / name
    if target.is_dir():
        find_corpus_file(target)
        return target
    root.mkdir(parents=True, exist_ok=True)
    expected = BEIR_MD5.get(name) or md5  # a caller's md5 never replaces the published one
    if expected is None:
        logger.warning("no published checksum for %r; the download will not be verified", name)
    part = root / f"{name}.zip.part"
    _fetch(f"{base_url.rstrip('/')}/{name}.zip", part, progress, timeout)
    if expected is not None and (actual := _md5(part)) != expected:
        part.unlink()
        raise DownloadError(f"{name}.zip: md5 {actual} does not match the expected {expected}")
    with atomic_path(target) as temp:
        unpacked = temp.with_name(temp.name + ".unzip")
        try:
            _safe_extract(part, unpacked)
            inner = unpacked / name if (unpacked / name).is_dir() else unpacked
            find_corpus_file(inner)  # refuse an archive that is not a BEIR dataset
            inner.rename(temp)
        finally:
            shutil.rmtree(unpacked, ignore_errors=True)
    part.unlink()
    return target
