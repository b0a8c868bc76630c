"""Every Redis key the job queue and the corpus registry write, as named prefixes under one
namespace (the cache's own are :class:`hardneg.service.cache.CacheKeys`, beside the cache).

``Keys(settings.redis_prefix)`` turns the prefixes into keys, e.g. ``hardneg:job:j3f2...``.
"""

from __future__ import annotations

from dataclasses import dataclass

JOB_PREFIX = "job:"  # hash: one job record
JOB_INDEX = "jobs"  # sorted set: job id -> creation time
JOB_STATE_PREFIX = "jobs:state:"  # set per state: the job ids in that state
JOB_KIND_PREFIX = "jobs:kind:"  # set per kind: the job ids of that kind
LEASE_PREFIX = "lease:"  # string with TTL: "<attempt>" while a run of the job is alive
CANCEL_PREFIX = "cancel:"  # string: time a cancel was requested
DEDUPE_PREFIX = "dedupe:"  # string: dedupe key -> job id
IDEMPOTENCY_PREFIX = "idempotency:"  # string with TTL: JSON {request digest, resource id}
CORPUS_PREFIX = "corpus:"  # string: one corpus record (JSON)
CORPUS_INDEX = "corpora"  # sorted set: corpus id -> creation time
CORPUS_SOURCE_PREFIX = "corpus-source:"  # string: "beir:<name>" / "path:<dir>" -> corpus id
WORKERS = "workers"  # sorted set: worker name -> last heartbeat (unix time)


@dataclass(frozen=True)
class Keys:
    namespace: str

    def _key(self, prefix: str, suffix: str = "") -> str:
        return f"{self.namespace}:{prefix}{suffix}"

    def job(self, job_id: str) -> str:
        return self._key(JOB_PREFIX, job_id)

    @property
    def job_index(self) -> str:
        return self._key(JOB_INDEX)

    def job_state(self, state: str) -> str:
        return self._key(JOB_STATE_PREFIX, state)

    def job_kind(self, kind: str) -> str:
        return self._key(JOB_KIND_PREFIX, kind)

    def lease(self, job_id: str) -> str:
        return self._key(LEASE_PREFIX, job_id)

    def cancel(self, job_id: str) -> str:
        return self._key(CANCEL_PREFIX, job_id)

    def dedupe(self, digest: str) -> str:
        return self._key(DEDUPE_PREFIX, digest)

    def idempotency(self, scope: str, digest: str) -> str:
        return self._key(IDEMPOTENCY_PREFIX, f"{scope}:{digest}")

    def corpus(self, corpus_id: str) -> str:
        return self._key(CORPUS_PREFIX, corpus_id)

    @property
    def corpus_index(self) -> str:
        return self._key(CORPUS_INDEX)

    def corpus_source(self, source: str) -> str:
        return self._key(CORPUS_SOURCE_PREFIX, source)

    @property
    def workers(self) -> str:
        return self._key(WORKERS)
