"""One writer at a time per corpus: a Redis lease with a fencing token, and the orphan sweep.

Every change to a corpus's files and record (a queries or qrels upload, a delete) runs inside
:func:`corpus_lock`: ``SET lock <token> NX PX`` (waiting up to ``wait`` seconds for another
writer), and the record update that ends the change is a compare-and-swap that also checks the
lock still holds this token (:meth:`CorpusStore.update` with ``fence``): a writer whose lease ran
out, or who lost the lock to a Redis failover, cannot overwrite the record, and rolls its files
back instead. Taking the lock is a Redis write, so a Redis that refuses writes (out of memory
under ``noeviction``, a read-only replica) is found out before anything on disk changes.

:func:`sweep_orphans` removes corpus folders under ``<home>/corpora`` that no record names (an
API killed between deleting a record and its files, or between writing a folder and its record),
once they are older than a grace period and no job is still generating them.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import redis

from hardneg.service.jobs.corpora import CorpusStore, content_version, corpora_root

logger = logging.getLogger(__name__)

LEASE_SECONDS = 600.0  # longest a change may hold the lock (validating a large upload)
WAIT_SECONDS = 30.0  # how long a second writer waits before it is told to retry
ORPHAN_GRACE_SECONDS = 600.0
# the old file a write keeps while it swaps a new one in (hardneg.service.api.corpus_files)
BACKUP = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{32}\.old\.tmp$")


class CorpusBusyError(RuntimeError):
    """Another request is changing this corpus."""


def lock_key(store: CorpusStore, corpus_id: str) -> str:
    return store.keys.corpus(corpus_id) + ":lock"


@contextlib.contextmanager
def corpus_lock(
    store: CorpusStore,
    corpus_id: str,
    wait: float = WAIT_SECONDS,
    lease: float = LEASE_SECONDS,
) -> Iterator[str]:
    """Hold the corpus's write lock; yields the fencing token for :meth:`CorpusStore.update`."""
    key, token = lock_key(store, corpus_id), uuid.uuid4().hex
    deadline = time.monotonic() + wait
    while not store.client.set(key, token, nx=True, px=int(lease * 1000)):
        if time.monotonic() > deadline:
            raise CorpusBusyError("another request is changing this corpus; retry shortly")
        time.sleep(0.05)
    try:
        yield token
    finally:
        _release(store.client, key, token)


def _release(client: redis.Redis, key: str, token: str) -> None:
    """Delete the lock only while it is still ours (compare-and-delete)."""
    with client.pipeline() as pipe:
        try:
            pipe.watch(key)
            if pipe.get(key) == token:
                pipe.multi()
                pipe.delete(key)
                pipe.execute()
        except (redis.WatchError, redis.RedisError):
            pass  # someone else holds it now, or Redis is gone: the lease expires on its own


def _generating(store: CorpusStore, folder: Path) -> bool:
    """A generate job's corpus (``c<job hex>``) whose job has not finished yet."""
    job = store.client.hgetall(store.keys.job("j" + folder.name[1:]))
    return bool(job) and job.get("state") in ("queued", "running")


def _age(folder: Path) -> float:
    stamps = [folder.stat().st_mtime]
    stamps += [child.stat().st_mtime for child in folder.iterdir()]
    return time.time() - max(stamps)


def sweep_orphans(home: Path, store: CorpusStore, grace: float = ORPHAN_GRACE_SECONDS) -> int:
    """Remove corpus folders without a record (see the module docstring); returns how many."""
    root = corpora_root(home)
    if not root.is_dir():
        return 0
    removed = 0
    for folder in root.iterdir():
        if not folder.is_dir() or not folder.name.startswith("c") or folder.name.endswith(".tmp"):
            continue
        try:
            if store.get(folder.name) is not None or _generating(store, folder):
                continue
            if _age(folder) < grace:
                continue
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    if removed:
        logger.info("removed %d corpus folder(s) that no record names under %s", removed, root)
    return removed


def recover_interrupted(home: Path, store: CorpusStore) -> int:
    """Finish the writes an API killed mid-swap left: a backup beside a file means the new file
    was moved in; if the record does not name the files' version, the commit never happened
    and the old file goes back (else the backup is just removed). Returns files restored."""
    root = corpora_root(home)
    restored = 0
    for backup in root.glob("c*/**/.*.old.tmp") if root.is_dir() else ():
        match = BACKUP.match(backup.name)
        corpus_id = backup.relative_to(root).parts[0]
        record = store.get(corpus_id)
        if match is None or record is None:
            continue
        try:
            with corpus_lock(store, corpus_id, wait=0):
                if not backup.exists():
                    continue
                current = content_version(record.fingerprint or "", record.path)
                if current != record.version:
                    backup.replace(backup.with_name(match["name"]))
                    restored += 1
                else:
                    backup.unlink()
        except CorpusBusyError:
            continue  # a live write of another API process: it cleans up itself
    if restored:
        logger.warning("put back %d file(s) of corpus writes that were interrupted", restored)
    return restored
