"""A job pins the corpus content it was submitted for: hard links of the corpus's files.

At submission (holding the corpus's write lock, so files and record agree) the files of an
uploaded or generated corpus are hard-linked into ``<home>/snapshots/<job id>/`` with the
corpus record beside them. Uploads replace a file by renaming a new one over it, so the links
keep the old content: a queued job reads exactly the version its dedupe key names, whatever is
uploaded to the corpus (or whether it is deleted) before it runs. Links cost no space until the
corpus changes. The snapshot goes when the job ends; snapshots of finished or forgotten jobs are
swept at API start.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import replace
from pathlib import Path

from hardneg.core.atomic import atomic_path
from hardneg.service.jobs.corpora import CorpusRecord
from hardneg.service.jobs.store import JobStore

logger = logging.getLogger(__name__)

RECORD_NAME = ".corpus-record.json"


def snapshot_dir(home: Path, job_id: str) -> Path:
    return home / "snapshots" / job_id


def take_snapshot(home: Path, job_id: str, corpus: CorpusRecord) -> Path:
    """Hard-link every file of ``corpus``'s folder (temporary files aside) for ``job_id``."""
    target = snapshot_dir(home, job_id)
    source = corpus.path
    with atomic_path(target) as temp:
        temp.mkdir()
        for folder, _dirs, names in os.walk(source):
            for name in names:
                if name.endswith(".tmp"):
                    continue
                path = Path(folder) / name
                linked = temp / path.relative_to(source)
                linked.parent.mkdir(parents=True, exist_ok=True)
                os.link(path, linked)
        (temp / RECORD_NAME).write_text(corpus.to_json())
    return target


def pinned_corpus(home: Path, job_id: str) -> CorpusRecord | None:
    """The corpus as the job was submitted for, reading from its snapshot; None without one."""
    folder = snapshot_dir(home, job_id)
    record = folder / RECORD_NAME
    if not record.is_file():
        return None
    return replace(CorpusRecord.from_json(record.read_text()), folder=str(folder))


def drop_snapshot(home: Path, job_id: str) -> None:
    shutil.rmtree(snapshot_dir(home, job_id), ignore_errors=True)


def sweep_snapshots(home: Path, jobs: JobStore) -> int:
    """Remove the snapshots of jobs that have ended or are gone; returns how many."""
    root = home / "snapshots"
    if not root.is_dir():
        return 0
    removed = 0
    for folder in root.iterdir():
        if folder.name.endswith(".tmp"):
            continue
        job = jobs.get(folder.name)
        if job is None or job.terminal:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    if removed:
        logger.info("removed %d snapshot(s) of finished jobs under %s", removed, root)
    return removed
