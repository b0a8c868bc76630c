"""Job artifacts on the shared data directory: published atomically, paged, cleaned up.

A job writes under ``<home>/jobs/<id>/``. When it succeeds, every folder it returned (a model)
is also packed as ``<name>.tar.gz``, and the JSONL served by ``/results`` (linked into the job
folder when it lies deeper) gets a Parquet copy and a line-offset index (``.idx``, int64 byte
offsets) beside it, so any page is one seek away and the returned folders stay as written.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hardneg.core.atomic import atomic_path

MEDIA_TYPES = {
    ".jsonl": "application/x-ndjson",
    ".json": "application/json",
    ".parquet": "application/vnd.apache.parquet",
    ".gz": "application/gzip",
    ".tsv": "text/tab-separated-values",
    ".png": "image/png",
}
TEMP_SUFFIXES = (".tmp", ".part")


@dataclass(frozen=True)
class ArtifactEntry:
    name: str
    path: str  # relative to the job folder
    media_type: str
    bytes: int

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "media_type": self.media_type, "bytes": self.bytes}


def _entry(job_dir: Path, path: Path) -> ArtifactEntry:
    media = MEDIA_TYPES.get(path.suffix, "application/octet-stream")
    return ArtifactEntry(path.name, str(path.relative_to(job_dir)), media, path.stat().st_size)


def _inside(job_dir: Path, path: Path) -> Path:
    resolved = path.resolve()
    if not resolved.is_relative_to(job_dir.resolve()):
        raise ValueError(f"artifact {path} is outside the job folder")
    if not resolved.exists():
        raise ValueError(f"artifact {path.name} was not written")
    return resolved


def pack_folder(folder: Path, target: Path) -> Path:
    """``folder`` as a gzipped tar whose single top-level entry is the folder's name."""
    with atomic_path(target) as temp, tarfile.open(temp, "w:gz") as archive:
        archive.add(folder, arcname=folder.name)
    return target


def jsonl_to_parquet(source: Path, target: Path) -> Path:
    import pyarrow.json as pa_json
    import pyarrow.parquet as pq

    table = pa_json.read_json(source)
    with atomic_path(target) as temp:
        pq.write_table(table, temp)
    return target


def write_line_index(source: Path) -> Path:
    """``<file>.idx``: the byte offset of every non-blank line of ``source``."""
    offsets: list[int] = []
    position = 0
    with source.open("rb") as handle:
        for line in handle:
            if line.strip():
                offsets.append(position)
            position += len(line)
    target = source.with_name(source.name + ".idx")
    with atomic_path(target, suffix=".npy") as temp, temp.open("wb") as handle:
        np.save(handle, np.asarray(offsets, dtype=np.int64))
    return target


def _beside_job(job_dir: Path, path: Path) -> Path:
    """A hard link (else a copy) of ``path`` directly in the job folder."""
    target = job_dir / path.name
    with atomic_path(target) as temp:
        try:
            os.link(path, temp)
        except OSError:
            shutil.copyfile(path, temp)
    return target


def publish(
    job_dir: Path, artifacts: Mapping[str, Path], results: str | None
) -> tuple[dict[str, object], str | None]:
    """Check and describe a run's artifacts; pack folders, index and convert the results file."""
    entries: dict[str, ArtifactEntry] = {}
    for name, raw_path in artifacts.items():
        path = _inside(job_dir, raw_path)
        if path.is_dir():
            archive = pack_folder(path, path.with_name(path.name + ".tar.gz"))
            entries[archive.name] = _entry(job_dir, archive)
            continue
        if name == results and path.parent != job_dir.resolve():
            path = _beside_job(job_dir, path)  # index and Parquet copy go to the job folder
        entries[name] = _entry(job_dir, path)
        if name == results:
            write_line_index(path)
            if path.suffix == ".jsonl" and path.stat().st_size > 0:
                parquet = jsonl_to_parquet(path, path.with_suffix(".parquet"))
                entries[parquet.name] = _entry(job_dir, parquet)
    if results is not None and results not in entries:
        raise ValueError(f"results artifact {results!r} was not returned")
    return {name: entry.to_json() for name, entry in entries.items()}, results


def read_page(path: Path, offset: int, limit: int) -> tuple[list[dict[str, object]], int]:
    """Rows ``offset .. offset+limit`` of a published JSONL file, and the total row count."""
    offsets = np.load(path.with_name(path.name + ".idx"))
    total = len(offsets)
    rows: list[dict[str, object]] = []
    if offset >= total or limit <= 0:
        return rows, total
    with path.open("rb") as handle:
        handle.seek(int(offsets[offset]))
        for _ in range(min(limit, total - offset)):
            line = handle.readline()
            while line and not line.strip():
                line = handle.readline()
            rows.append(json.loads(line))
    return rows, total


def remove_temp_files(root: Path) -> int:
    """Delete leftovers of writes that were killed (``*.tmp`` files/folders, ``*.part``)."""
    removed = 0
    if not root.is_dir():
        return removed
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.name.endswith(TEMP_SUFFIXES) and path.exists():
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed += 1
    return removed


def discard(job_dir: Path) -> None:
    """Remove everything a job that did not succeed wrote."""
    shutil.rmtree(job_dir, ignore_errors=True)
