"""Job records in Redis: create, read, list, and compare-and-set state transitions.

Every write made by a running job is fenced by its attempt number: a run that was declared lost
(and retried) cannot overwrite the record of the attempt that replaced it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from enum import Enum

import redis

from hardneg.service.jobs.keys import Keys
from hardneg.service.jobs.records import JOB_STATES, JobRecord, JobState

# Every write of a running job starts here: nothing happens unless the record is running this
# attempt (KEYS[1] the job, ARGV[1] the attempt).
_FENCE = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return 0 end
"""
# A renewal of the lease (KEYS[2]) for the ARGV[{lease_ms}] milliseconds that then says whether a
# cancel (KEYS[3]) was requested.
_LEASE = """
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[{lease_ms}])
if redis.call('EXISTS', KEYS[3]) == 1 then return 2 end
return 1
"""

# KEYS: job, lease, cancel. ARGV: attempt, done, total, stage, now, lease ms.
# Writes progress and renews the lease.
_PROGRESS = (
    _FENCE
    + """
redis.call('HSET', KEYS[1], 'done', ARGV[2], 'total', ARGV[3], 'stage', ARGV[4],
           'updated_at', ARGV[5])
"""
    + _LEASE.format(lease_ms=6)
)

# KEYS: job, lease, cancel. ARGV: attempt, lease ms.
_RENEW = _FENCE + _LEASE.format(lease_ms=2)

# KEYS: job. ARGV: attempt, stats JSON, now.
_STATS = (
    _FENCE
    + """
redis.call('HSET', KEYS[1], 'stats', ARGV[2], 'updated_at', ARGV[3])
return 1
"""
)

# KEYS: lease. ARGV: attempt. Delete the lease only if it belongs to this attempt.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Ack(Enum):
    """What a running job learns when it reports progress."""

    OK = 1
    CANCEL = 2  # a cancel was requested: stop
    GONE = 0  # the record is no longer running this attempt: stop without writing anything


class JobStore:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._progress = client.register_script(_PROGRESS)
        self._renew = client.register_script(_RENEW)
        self._stats = client.register_script(_STATS)
        self._release = client.register_script(_RELEASE)

    # ---- reading ----------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        raw = self.client.hgetall(self.keys.job(job_id))
        return JobRecord.from_hash(raw) if raw else None  # type: ignore[arg-type]

    def page(
        self,
        state: JobState | None = None,
        kind: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[JobRecord], int]:
        """Newest first; filtered by state and kind. Returns (page, total matching).

        Only the ids are filtered (sets); only the page's records are read.
        """
        ids = [str(i) for i in self.client.zrevrange(self.keys.job_index, 0, -1)]
        for wanted, key in ((state, self.keys.job_state), (kind, self.keys.job_kind)):
            if wanted is not None:
                members = {str(m) for m in self.client.smembers(key(wanted))}
                ids = [i for i in ids if i in members]
        records = [r for r in (self.get(i) for i in ids[offset : offset + limit]) if r]
        return records, len(ids)

    def ids_in_state(self, state: JobState) -> list[str]:
        return sorted(str(m) for m in self.client.smembers(self.keys.job_state(state)))

    def counts_by_state(self) -> dict[str, int]:
        pipe = self.client.pipeline(transaction=False)
        for state in JOB_STATES:
            pipe.scard(self.keys.job_state(state))
        return dict(zip(JOB_STATES, (int(n) for n in pipe.execute()), strict=True))

    def lease_owner(self, job_id: str) -> int | None:
        value = self.client.get(self.keys.lease(job_id))
        return int(value) if value else None

    def cancel_requested(self, job_id: str) -> float | None:
        value = self.client.get(self.keys.cancel(job_id))
        return float(value) if value else None

    # ---- writing ----------------------------------------------------------------------------

    def stage_create(self, pipe: redis.client.Pipeline, record: JobRecord) -> None:
        """Queue the writes that create ``record`` (and index it) on ``pipe``."""
        pipe.hset(self.keys.job(record.id), mapping=record.to_hash())  # type: ignore[arg-type]
        pipe.zadd(self.keys.job_index, {record.id: record.created_at})
        pipe.sadd(self.keys.job_state(record.state), record.id)
        pipe.sadd(self.keys.job_kind(record.kind), record.id)

    def create(self, record: JobRecord) -> None:
        pipe = self.client.pipeline()
        self.stage_create(pipe, record)
        pipe.execute()

    def delete(self, record: JobRecord) -> None:
        """Forget a finished job (its files are the caller's to remove)."""
        pipe = self.client.pipeline()
        pipe.delete(self.keys.job(record.id), self.keys.lease(record.id))
        pipe.delete(self.keys.cancel(record.id), self.keys.job(record.id) + ":submitters")
        pipe.zrem(self.keys.job_index, record.id)
        pipe.srem(self.keys.job_state(record.state), record.id)
        pipe.srem(self.keys.job_kind(record.kind), record.id)
        pipe.execute()

    def transition(
        self,
        job_id: str,
        expect: Collection[JobState],
        change: Callable[[JobRecord], JobRecord],
        attempt: int | None = None,
        lease_ms: int | None = None,
        no_lease: bool = False,
    ) -> JobRecord | None:
        """Apply ``change`` if the record is in one of ``expect`` (and at ``attempt``).

        Optimistic: WATCH the record, check, write in MULTI, retry on a concurrent write. With
        ``lease_ms`` the new attempt's lease is taken in the same transaction; with ``no_lease``
        the change only applies while the current attempt holds no lease. Returns the new
        record, or None when the precondition did not hold.
        """
        key, lease_key = self.keys.job(job_id), self.keys.lease(job_id)
        while True:
            with self.client.pipeline() as pipe:
                try:
                    pipe.watch(key, lease_key)
                    raw = pipe.hgetall(key)
                    if not raw:
                        return None
                    old = JobRecord.from_hash(raw)  # type: ignore[arg-type]
                    if old.state not in expect or (attempt is not None and old.attempt != attempt):
                        return None
                    if no_lease and pipe.get(lease_key) == str(old.attempt):
                        return None
                    new = replace(change(old), updated_at=time.time())
                    pipe.multi()
                    pipe.hset(key, mapping=new.to_hash())  # type: ignore[arg-type]
                    if new.state != old.state:
                        pipe.smove(
                            self.keys.job_state(old.state), self.keys.job_state(new.state), job_id
                        )
                    if lease_ms is not None:
                        pipe.set(lease_key, str(new.attempt), px=lease_ms)
                    pipe.execute()
                    return new
                except redis.WatchError:
                    continue

    def progress(
        self, job_id: str, attempt: int, done: int, total: int, stage: str, lease_ms: int
    ) -> Ack:
        result = self._progress(
            keys=[self.keys.job(job_id), self.keys.lease(job_id), self.keys.cancel(job_id)],
            args=[attempt, done, total, stage, time.time(), lease_ms],
        )
        return Ack(int(result))

    def renew(self, job_id: str, attempt: int, lease_ms: int) -> Ack:
        result = self._renew(
            keys=[self.keys.job(job_id), self.keys.lease(job_id), self.keys.cancel(job_id)],
            args=[attempt, lease_ms],
        )
        return Ack(int(result))

    def publish_stats(self, job_id: str, attempt: int, stats: Mapping[str, object]) -> None:
        """Replace the running attempt's interim stats (ignored once it no longer owns the job)."""
        payload = json.dumps(dict(stats), default=str)
        self._stats(keys=[self.keys.job(job_id)], args=[attempt, payload, time.time()])

    def release_lease(self, job_id: str, attempt: int) -> None:
        self._release(keys=[self.keys.lease(job_id)], args=[attempt])

    def request_cancel(self, job_id: str) -> None:
        self.client.set(self.keys.cancel(job_id), str(time.time()), nx=True)
