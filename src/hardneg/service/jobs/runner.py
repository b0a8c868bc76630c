"""The function RQ runs in a work horse: one attempt of one job, start to finish.

The attempt starts only if the record is still ``queued`` at this attempt (a cancelled or
already-retried job is skipped), takes the lease in the same transaction, runs the kind's
pipeline with a :class:`JobProgress`, publishes the artifacts, and ends the record as
succeeded, failed (with the reason) or cancelled. Every end is fenced by the attempt number.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

from hardneg.service.jobs.artifacts import discard, publish, remove_temp_files
from hardneg.service.jobs.context import JobContext, JobOutcome
from hardneg.service.jobs.failures import failure_reason
from hardneg.service.jobs.job_progress import (
    JobCancelled,
    JobProgress,
    JobSupersededError,
    LeaseKeeper,
)
from hardneg.service.jobs.paths import job_dir
from hardneg.service.jobs.records import JobRecord
from hardneg.service.jobs.registry import KINDS
from hardneg.service.jobs.services import Services
from hardneg.service.jobs.snapshots import drop_snapshot, pinned_corpus
from hardneg.service.settings import Settings

logger = logging.getLogger(__name__)


def _start(record: JobRecord, worker: str, pid: int) -> JobRecord:
    return replace(
        record,
        state="running",
        started_at=time.time(),
        stage="starting",
        done=0,
        total=0,
        worker=worker,
        pid=pid,
        error=None,
    ).with_event(f"attempt {record.attempt} started on {worker} (pid {pid})")


def _succeed(
    record: JobRecord, outcome: JobOutcome, artifacts: dict[str, object], results: str | None
) -> JobRecord:
    return replace(
        record,
        state="succeeded",
        finished_at=time.time(),
        stage="done",
        done=max(record.done, record.total),
        stats=dict(outcome.stats),
        artifacts=artifacts,
        results=results,
    ).with_event(f"attempt {record.attempt} succeeded")


def _end(record: JobRecord, state: str, error: str | None) -> JobRecord:
    ended = replace(record, state=state, finished_at=time.time(), stage=state, error=error)  # type: ignore[arg-type]
    return ended.with_event(f"attempt {record.attempt} {state}" + (f": {error}" if error else ""))


def _note(record: JobRecord, message: str) -> JobRecord:
    return record.with_event(message)


def add_event(services: Services, job_id: str, attempt: int, message: str) -> None:
    """Append ``message`` to the events of ``job_id`` while ``attempt`` is running it."""
    services.jobs.transition(job_id, {"running"}, partial(_note, message=message), attempt)


def _context(
    services: Services, record: JobRecord, folder: Path, progress: JobProgress
) -> JobContext:
    corpus = None
    if KINDS[record.kind].needs_corpus:
        # the content the job was submitted for (its snapshot), else the corpus as it is now
        corpus = pinned_corpus(services.settings.home, record.id) or services.corpora.get(
            record.corpus_id or ""
        )
        if corpus is None:
            raise ValueError(f"corpus {record.corpus_id} no longer exists")
    return JobContext(
        job_id=record.id,
        attempt=record.attempt,
        settings=services.settings,
        workspace=services.workspace,
        corpus=corpus,
        output_dir=folder,
        checkpoint_dir=folder / "checkpoint",
        progress=progress,
        cache=services.cache,
        corpora=services.corpora,
        publish=partial(services.jobs.publish_stats, record.id, record.attempt),
        event=partial(add_event, services, record.id, record.attempt),
    )


def settle_files(services: Services, record: JobRecord) -> None:
    """Remove what a job that ended without success wrote (its folder, the kind's extras)."""
    discard(job_dir(services.settings.home, record.id))
    drop_snapshot(services.settings.home, record.id)
    try:
        KINDS[record.kind].clean_up(record.params, services.settings)
    except Exception:
        logger.warning("job %s: cleanup failed", record.id, exc_info=True)


def run_attempt(services: Services, job_id: str, attempt: int) -> str:
    """Run one attempt; returns the state it ended in (or 'skipped' / 'superseded')."""
    jobs, settings = services.jobs, services.settings
    worker = os.environ.get("RQ_WORKER_ID") or socket.gethostname()
    lease_ms = max(int(settings.job_lease_seconds * 1000), 100)
    record = jobs.transition(
        job_id, {"queued"}, partial(_start, worker=worker, pid=os.getpid()), attempt, lease_ms
    )
    if record is None:
        logger.info("job %s attempt %d is not queued any more: skipped", job_id, attempt)
        return "skipped"
    folder = job_dir(settings.home, job_id)
    folder.mkdir(parents=True, exist_ok=True)
    if remove_temp_files(folder):
        logger.info("job %s: removed leftovers of an earlier attempt", job_id)
    kind = KINDS[record.kind]
    claims = services.cache
    with LeaseKeeper(
        jobs, job_id, attempt, settings.job_lease_seconds, claims.renew_claims
    ) as lease:
        progress = JobProgress(jobs, job_id, attempt, lease)
        try:
            params = kind.params.model_validate(record.params)
            outcome = kind.load()(params, _context(services, record, folder, progress))
            artifacts, results = publish(folder, outcome.artifacts, outcome.results)
            change = partial(_succeed, outcome=outcome, artifacts=artifacts, results=results)
            ended = jobs.transition(job_id, {"running"}, change, attempt)
        except JobSupersededError:
            logger.warning("job %s attempt %d was superseded; stopping", job_id, attempt)
            return "superseded"
        except Exception as exc:
            cancelled = isinstance(exc, JobCancelled) or jobs.cancel_requested(job_id) is not None
            if cancelled:
                logger.info("job %s cancelled during attempt %d", job_id, attempt)
                change = partial(_end, state="cancelled", error=None)
            else:
                logger.exception("job %s attempt %d failed", job_id, attempt)
                reason = failure_reason(exc)
                change = partial(_end, state="failed", error=reason)
            ended = jobs.transition(job_id, {"running"}, change, attempt)
            if ended is not None:
                settle_files(services, ended)
        finally:
            claims.release_claims()  # values this run promised but did not compute
            jobs.release_lease(job_id, attempt)
    if ended is None:
        return "superseded"
    drop_snapshot(settings.home, job_id)  # ended: the pinned content is not needed any more
    logger.info("job %s attempt %d %s", job_id, attempt, ended.state)
    return ended.state


def execute(job_id: str, attempt: int) -> str:
    """RQ entry point (``hardneg.service.jobs.runner.execute``)."""
    services = Services.connect(Settings(), patient=True)
    try:
        return run_attempt(services, job_id, attempt)
    finally:
        services.close()
