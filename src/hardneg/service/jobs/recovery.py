"""Finding runs that died and settling them: retry, fail with the reason, or cancel.

A running attempt holds a lease (``<prefix>:lease:<id>``, renewed every third of
``job_lease_seconds``). When the lease is gone while the record still says ``running``, the
attempt is lost (its process was killed, its machine died): the job is re-queued as the next
attempt, or marked failed with the reason once ``max_attempts`` runs were lost. Every worker
runs :func:`reap` periodically; the API runs :func:`recover` when it shows a running job, so a
job is never left ``running`` even when no worker is alive.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from rq.command import send_stop_job_command

from hardneg.service.jobs.queue import attempt_alive_in_rq, enqueue
from hardneg.service.jobs.records import JobRecord
from hardneg.service.jobs.runner import settle_files
from hardneg.service.jobs.services import Services

logger = logging.getLogger(__name__)


def _lost(record: JobRecord, reason: str) -> JobRecord:
    return replace(
        record, state="queued", attempt=record.attempt + 1, stage="retrying", worker=None, pid=None
    ).with_event(f"attempt {record.attempt} lost ({reason}); retrying")


def _failed(record: JobRecord, reason: str) -> JobRecord:
    error = (
        f"worker lost during attempt {record.attempt} of {record.max_attempts} ({reason}); "
        "no attempts left"
    )
    ended = replace(record, state="failed", finished_at=time.time(), stage="failed", error=error)
    return ended.with_event(error)


def _cancelled(record: JobRecord, reason: str) -> JobRecord:
    ended = replace(record, state="cancelled", finished_at=time.time(), stage="cancelled")
    return ended.with_event(f"attempt {record.attempt} stopped after a cancel ({reason})")


def recover(services: Services, job_id: str, reason: str) -> JobRecord | None:
    """Settle a running job whose current attempt holds no lease. Returns the new record."""
    jobs = services.jobs
    record = jobs.get(job_id)
    if record is None or record.state != "running":
        return None
    if jobs.lease_owner(job_id) == record.attempt:
        return None  # alive
    if jobs.cancel_requested(job_id) is not None:
        change = _cancelled
    elif record.attempt < record.max_attempts:
        change = _lost
    else:
        change = _failed
    new = jobs.transition(
        job_id, {"running"}, lambda r: change(r, reason), attempt=record.attempt, no_lease=True
    )
    if new is None:
        return None
    logger.warning("job %s attempt %d: %s -> %s", job_id, record.attempt, reason, new.state)
    if new.state == "queued":
        enqueue(services.queue, new, services.settings)
    else:
        settle_files(services, new)
    return new


def requeue_if_lost(services: Services, record: JobRecord, min_age: float) -> bool:
    """Re-enqueue a queued job whose RQ entry vanished (e.g. Redis lost the queue)."""
    if record.state != "queued" or time.time() - record.updated_at < min_age:
        return False
    if attempt_alive_in_rq(services.queue, record):
        return False
    logger.warning(
        "job %s attempt %d was queued but not in RQ; re-enqueued", record.id, record.attempt
    )
    enqueue(services.queue, record, services.settings)
    return True


def escalate_cancel(services: Services, record: JobRecord) -> bool:
    """Kill the work horse of a running job that ignored its cancel past the grace period."""
    requested = services.jobs.cancel_requested(record.id)
    if record.state != "running" or requested is None:
        return False
    if time.time() - requested < services.settings.cancel_grace_seconds:
        return False
    try:
        send_stop_job_command(services.raw, record.rq_id(services.queue.name))
    except Exception as exc:  # the RQ job is gone or not executing: the lease will settle it
        logger.info("job %s: could not send stop-job (%s)", record.id, type(exc).__name__)
        return False
    logger.warning(
        "job %s ignored its cancel for %.0fs: stop-job sent", record.id, time.time() - requested
    )
    return True


def reap(services: Services) -> dict[str, int]:
    """One maintenance pass over running and queued jobs. Safe to run from many processes."""
    counts = {"recovered": 0, "requeued": 0, "stopped": 0}
    jobs = services.jobs
    lease = services.settings.job_lease_seconds
    for job_id in jobs.ids_in_state("running"):
        record = jobs.get(job_id)
        if record is None:
            continue
        if jobs.lease_owner(job_id) != record.attempt:
            reason = f"no heartbeat for {lease:g}s"
            counts["recovered"] += recover(services, job_id, reason) is not None
        else:
            counts["stopped"] += escalate_cancel(services, record)
    min_age = 2 * services.settings.reap_interval_seconds + lease
    for job_id in jobs.ids_in_state("queued"):
        record = jobs.get(job_id)
        if record is not None:
            counts["requeued"] += requeue_if_lost(services, record, min_age)
    return counts
