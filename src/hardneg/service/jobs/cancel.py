"""Cancelling a job: a queued one never starts; a running one stops at its next progress report
and is killed once the grace period is over (at once with ``kill``)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace

from hardneg.service.jobs.records import JobRecord
from hardneg.service.jobs.services import Services


def cancel(services: Services, job_id: str, kill: bool = False) -> JobRecord | None:
    """Request the cancel; the record as it is now (None when it was already finished)."""
    services.jobs.request_cancel(job_id)
    now = time.time()
    marked = services.jobs.transition(
        job_id,
        {"queued", "running"},
        lambda r: (
            replace(
                r, state="cancelled", stage="cancelled", finished_at=now, cancel_requested_at=now
            )
            if r.state == "queued"
            else replace(r, cancel_requested_at=r.cancel_requested_at or now)
        ).with_event("cancel requested"),
    )
    if marked is not None and marked.state == "running" and kill:
        from rq.command import send_stop_job_command

        # not executing yet or any more: then the lease settles it
        with contextlib.suppress(Exception):
            send_stop_job_command(services.raw, marked.rq_id(services.queue.name))
    return marked


def _submitters(services: Services, job_id: str) -> str:
    return services.keys.job(job_id) + ":submitters"  # set: principals that asked for the job


def add_submitter(services: Services, job_id: str, principal: str) -> None:
    """Remember that ``principal`` submitted (or was deduplicated onto) the job."""
    services.text.sadd(_submitters(services, job_id), principal)


def withdraw(services: Services, job_id: str, principal: str) -> int:
    """Take ``principal``'s interest in a shared job back; how many other submitters remain.
    A deduplicated job is cancelled only once every one of its submitters has cancelled it
    (one caller cannot cancel it for the others); 0 means cancel it now."""
    key = _submitters(services, job_id)
    pipe = services.text.pipeline()
    pipe.srem(key, principal)
    pipe.scard(key)
    _, remaining = pipe.execute()
    return int(remaining)
