"""Putting one attempt of a job on the RQ queue."""

from __future__ import annotations

import logging

import redis
from rq import Queue
from rq.job import Job, JobStatus

from hardneg.service.jobs.records import JobRecord
from hardneg.service.settings import Settings

logger = logging.getLogger(__name__)

RUNNER = "hardneg.service.jobs.runner.execute"
RQ_RESULT_TTL = 3600  # RQ's own bookkeeping; our record is the durable one
RQ_FAILURE_TTL = 7 * 24 * 3600
_ALIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def make_queue(settings: Settings, connection: redis.Redis) -> Queue:
    return Queue(settings.queue_name, connection=connection)


def enqueue(queue: Queue, record: JobRecord, settings: Settings) -> str:
    """Enqueue ``record``'s current attempt; the RQ job id is derived, so a repeat overwrites."""
    rq_id = record.rq_id(queue.name)
    queue.enqueue_call(
        func=RUNNER,
        args=(record.id, record.attempt),
        timeout=settings.job_timeout_seconds,
        result_ttl=RQ_RESULT_TTL,
        failure_ttl=RQ_FAILURE_TTL,
        job_id=rq_id,
        description=f"hardneg {record.kind} {record.id} attempt {record.attempt}",
    )
    logger.info("enqueued %s job %s attempt %d", record.kind, record.id, record.attempt)
    return rq_id


def attempt_alive_in_rq(queue: Queue, record: JobRecord) -> bool:
    """Whether RQ still holds this attempt (waiting or executing)."""
    try:
        job = Job.fetch(record.rq_id(queue.name), connection=queue.connection)
    except Exception:  # NoSuchJobError, or a payload RQ can no longer read
        return False
    return job.get_status(refresh=False) in _ALIVE
