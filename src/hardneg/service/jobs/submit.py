"""Submitting jobs: identical requests share one job; Idempotency-Key replays one response.

Dedupe key: ``cache_key("job", {kind, params with defaults filled in, corpus content
version})``, and the job pins that version: an uploaded or generated corpus's files are
snapshotted for it (``hardneg.service.jobs.snapshots``), so new qrels mean a new job and never
change what a queued one reads. While the job it points to is queued, running or succeeded,
an identical request gets that job instead of a new one; after a failure or a cancel (or with
``force``) a new job replaces it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import redis
from pydantic import BaseModel

from hardneg.core.cache import cache_key
from hardneg.core.spec import flat_dump
from hardneg.service.jobs.corpora import CorpusRecord
from hardneg.service.jobs.corpus_lock import corpus_lock
from hardneg.service.jobs.queue import enqueue
from hardneg.service.jobs.records import JobRecord, new_job_id
from hardneg.service.jobs.registry import JobKind
from hardneg.service.jobs.services import Services
from hardneg.service.jobs.snapshots import drop_snapshot, take_snapshot

SHAREABLE_STATES = frozenset({"queued", "running", "succeeded"})


class IdempotencyConflictError(ValueError):
    """The Idempotency-Key was used before with a different request."""


class IdempotencyInProgressError(RuntimeError):
    """A request with the same Idempotency-Key is being handled right now."""


@dataclass(frozen=True)
class Submission:
    record: JobRecord
    created: bool  # False: an identical job existed and is returned instead


def dedupe_key(kind: str, params: dict[str, object], corpus: CorpusRecord | None) -> str:
    version = corpus.version if corpus is not None else None
    return cache_key("job", {"kind": kind, "params": params, "corpus": version})


class CorpusGoneError(LookupError):
    """The corpus was deleted while the job was being submitted."""


def _pin(services: Services, job_id: str, corpus: CorpusRecord) -> CorpusRecord:
    """Snapshot the corpus's files for the job, under its write lock (files and record agree);
    the record as snapshotted, whose version the dedupe key then names."""
    with corpus_lock(services.corpora, corpus.id):
        fresh = services.corpora.get(corpus.id)
        if fresh is None:
            raise CorpusGoneError(f"no corpus {corpus.id!r}")
        take_snapshot(services.settings.home, job_id, fresh)
    return fresh


def submit(
    services: Services,
    kind: JobKind,
    params: BaseModel,
    corpus: CorpusRecord | None,
    force: bool = False,
) -> Submission:
    params_json = flat_dump(params, server_owned=False)  # the request's JSON shape
    job_id = new_job_id()
    pinned = corpus is not None and corpus.owns_files and kind.needs_corpus
    if pinned:
        corpus = _pin(services, job_id, corpus)  # type: ignore[arg-type]
    key = dedupe_key(kind.name, params_json, corpus)
    record = JobRecord(
        id=job_id,
        kind=kind.name,
        params=params_json,
        corpus_id=corpus.id if corpus is not None else None,
        dedupe_key=key,
        max_attempts=services.settings.job_max_attempts,
    ).with_event("submitted")
    pointer, client = services.keys.dedupe(key), services.text
    while True:
        with client.pipeline() as pipe:
            try:
                pipe.watch(pointer)
                existing_id = pipe.get(pointer)
                existing = services.jobs.get(existing_id) if existing_id else None  # type: ignore[arg-type]
                if existing is not None and existing.state in SHAREABLE_STATES and not force:
                    drop_snapshot(services.settings.home, job_id)
                    return Submission(existing, created=False)
                pipe.multi()
                pipe.set(pointer, record.id)
                services.jobs.stage_create(pipe, record)
                pipe.execute()
                break
            except redis.WatchError:
                continue
            except BaseException:
                drop_snapshot(services.settings.home, job_id)
                raise
    enqueue(services.queue, record, services.settings)
    return Submission(record, created=True)


def request_digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class Idempotency:
    """Remembers, per (scope, client, key), which request it saw and what it created."""

    def __init__(self, services: Services, scope: str, principal: str, key: str) -> None:
        hashed = hashlib.sha256(f"{principal}\0{key}".encode()).hexdigest()
        self._redis_key = services.keys.idempotency(scope, hashed)
        self._client = services.text
        self._ttl = services.settings.idempotency_ttl_seconds

    def reserve(self, digest: str) -> str | None:
        """The resource id a previous identical request created, or None after reserving."""
        pending = json.dumps({"digest": digest, "id": None})
        if self._client.set(self._redis_key, pending, nx=True, ex=self._ttl):
            return None
        text = self._client.get(self._redis_key)
        seen = json.loads(str(text)) if text else {"digest": digest, "id": None}
        if seen["digest"] != digest:
            raise IdempotencyConflictError(
                "Idempotency-Key was already used with a different request"
            )
        if seen["id"] is None:
            raise IdempotencyInProgressError("a request with this Idempotency-Key is in progress")
        resource: str = seen["id"]
        return resource

    def complete(self, digest: str, resource_id: str) -> None:
        value = json.dumps({"digest": digest, "id": resource_id})
        self._client.set(self._redis_key, value, ex=self._ttl)

    def release(self) -> None:
        """Forget a reservation whose request failed, so the client may retry with the key."""
        self._client.delete(self._redis_key)
