"""A running job's link to its record: progress writes, the lease, and cancellation.

:class:`JobProgress` satisfies core's ``Progress`` protocol. Every call may raise
:class:`JobCancelled` (a cancel was requested) or :class:`JobSupersededError` (this attempt was
declared lost and another one owns the job), which stops the pipeline at its next progress
report; pipelines write through ``hardneg.core.atomic`` so nothing half-written stays behind.
:class:`LeaseKeeper` renews the lease (and the run's cache claims) from a thread, so a pipeline
that reports rarely keeps its lease, and a cancel is noticed within a fraction of the lease.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from hardneg.service.jobs.store import Ack, JobStore

logger = logging.getLogger(__name__)

MIN_WRITE_INTERVAL = 0.25  # seconds between two progress writes of the same stage


class JobCancelled(Exception):  # noqa: N818 (the name callers know)
    """The job was cancelled; raised from the progress callback to stop the work."""


class JobSupersededError(Exception):
    """This attempt no longer owns the job (declared lost, retried elsewhere)."""


class LeaseKeeper:
    """Renews the job's lease every third of its TTL until closed; remembers cancel/loss."""

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        attempt: int,
        lease_seconds: float,
        also_renew: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._job_id = job_id
        self._attempt = attempt
        self._also_renew = also_renew  # e.g. the run's cache claims, kept alive with the lease
        self.lease_ms = max(int(lease_seconds * 1000), 100)
        self._stop = threading.Event()
        self.cancelled = threading.Event()
        self.superseded = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def note(self, ack: Ack) -> None:
        if ack is Ack.CANCEL:
            self.cancelled.set()
        elif ack is Ack.GONE:
            self.superseded.set()

    def _loop(self) -> None:
        interval = self.lease_ms / 3000
        while not self._stop.wait(interval):
            try:
                self.note(self._store.renew(self._job_id, self._attempt, self.lease_ms))
                if self._also_renew is not None:
                    self._also_renew()
            except Exception:  # a Redis hiccup must not kill the job; the lease has slack
                logger.warning("job %s: lease renewal failed", self._job_id, exc_info=True)


class JobProgress:
    """core's ``Progress`` callback for a job run: throttled writes, then cancel checks."""

    def __init__(self, store: JobStore, job_id: str, attempt: int, lease: LeaseKeeper) -> None:
        self._store = store
        self._job_id = job_id
        self._attempt = attempt
        self._lease = lease
        self._last_stage = ""
        self._last_write = 0.0

    def check(self) -> None:
        """Raise if the job was cancelled or this attempt superseded."""
        if self._lease.superseded.is_set():
            raise JobSupersededError(f"job {self._job_id} attempt {self._attempt} was superseded")
        if self._lease.cancelled.is_set():
            raise JobCancelled(f"job {self._job_id} was cancelled")

    def __call__(self, done: int, total: int, stage: str) -> None:
        now = time.monotonic()
        finished_stage = total > 0 and done >= total
        recent = now - self._last_write < MIN_WRITE_INTERVAL
        if stage == self._last_stage and not finished_stage and recent:
            self.check()
            return
        self._last_stage, self._last_write = stage, now
        self._lease.note(
            self._store.progress(
                self._job_id, self._attempt, int(done), int(total), stage, self._lease.lease_ms
            )
        )
        self.check()
