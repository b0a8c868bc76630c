"""The ``hardneg worker`` process: an RQ worker plus a maintenance thread.

RQ forks a work horse per job (so a stop-job command can kill it). When a horse dies — killed by
the OOM killer, or by a stop-job after an ignored cancel — RQ calls ``handle_job_failure`` in
this process, and the job is settled at once (retried, failed with the reason, or cancelled).
When the whole worker dies, the job's lease expires and another worker's maintenance thread (or
the API) settles it. The maintenance thread also announces the worker for ``/readyz`` and
removes upload folders whose API process died (``jobs.scratch``). The worker's Redis clients are
patient: a Redis restart pauses the worker and its runs instead of killing them.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from typing import Any

from rq import Queue, Worker
from rq.executions import Execution
from rq.job import Job

from hardneg.service.jobs.connection import require_redis
from hardneg.service.jobs.corpora import uploads_root
from hardneg.service.jobs.queue import RUNNER
from hardneg.service.jobs.recovery import reap, recover
from hardneg.service.jobs.registry import KINDS
from hardneg.service.jobs.scratch import sweep
from hardneg.service.jobs.services import Services
from hardneg.service.settings import Settings

logger = logging.getLogger(__name__)

HEARTBEAT_MISSES = 3  # a worker silent for this many heartbeats is not counted as alive


def worker_name(settings: Settings) -> str:
    """Unique per start: a restarted container has the same hostname and pid (1) as the worker
    it replaces, whose RQ registration outlives it; RQ refuses to start under a live name."""
    return f"{settings.redis_prefix}.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(3)}"


def alive_workers(services: Services) -> int:
    cutoff = time.time() - HEARTBEAT_MISSES * services.settings.worker_heartbeat_seconds
    return int(services.text.zcount(services.keys.workers, cutoff, "+inf"))


class HardnegWorker(Worker):
    """An RQ worker that settles our job record as soon as a work horse dies."""

    services: Services

    def handle_job_failure(
        self,
        job: Job,
        queue: Queue,
        started_job_registry: Any = None,
        exc_string: str = "",
        execution: Execution | None = None,
    ) -> None:
        super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)
        if job.func_name != RUNNER or len(job.args) != 2:
            return
        job_id, attempt = str(job.args[0]), int(job.args[1])
        reason = exc_string.strip().rstrip(";") or "work horse died"
        try:
            # the horse is dead, so its lease is void: settle the job now
            self.services.jobs.release_lease(job_id, attempt)
            recover(self.services, job_id, reason)
        except Exception:
            logger.exception("could not settle job %s after its work horse died", job_id)


class Maintenance(threading.Thread):
    """Heartbeat for /readyz, and periodically :func:`reap` and a sweep of abandoned uploads."""

    def __init__(self, settings: Settings, name: str) -> None:
        super().__init__(name="hardneg-maintenance", daemon=True)
        self._services = Services.connect(settings, patient=True)  # its own connections
        self._worker = name
        self._stop_event = threading.Event()
        self._last_reap = 0.0

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=10)
        try:
            self._services.text.zrem(self._services.keys.workers, self._worker)
        finally:
            self._services.close()

    def beat(self) -> None:
        keys, now = self._services.keys, time.time()
        self._services.text.zadd(keys.workers, {self._worker: now})
        self._services.text.zremrangebyscore(keys.workers, 0, now - 24 * 3600)

    def run(self) -> None:
        settings = self._services.settings
        interval = min(settings.worker_heartbeat_seconds, settings.reap_interval_seconds)
        while True:
            try:
                self.beat()
                if time.monotonic() - self._last_reap >= settings.reap_interval_seconds:
                    self._last_reap = time.monotonic()
                    counts = reap(self._services)
                    counts["uploads_swept"] = sweep(uploads_root(settings.home))
                    if any(counts.values()):
                        logger.info("maintenance: %s", counts)
            except Exception:
                logger.warning("maintenance pass failed", exc_info=True)
            if self._stop_event.wait(interval):
                return


def preload_pipelines() -> None:
    """Import every kind's pipeline once here, so forked work horses start warm."""
    started = time.perf_counter()
    for kind in KINDS.values():
        try:
            kind.load()
        except ImportError:  # that kind's jobs will fail with the reason; the others still run
            logger.exception("job kind %s cannot be loaded", kind.name)
    logger.info("pipelines loaded in %.1fs", time.perf_counter() - started)


def run_worker(settings: Settings, burst: bool = False, log_level: str = "INFO") -> bool:
    """Work until stopped (or, with ``burst``, until the queue is empty)."""
    require_redis(settings)
    settings.home.mkdir(parents=True, exist_ok=True)
    preload_pipelines()
    services = Services.connect(settings, patient=True)
    name = worker_name(settings)
    worker = HardnegWorker([services.queue], connection=services.raw, name=name)
    worker.services = services
    maintenance = Maintenance(settings, name)
    maintenance.beat()
    maintenance.start()
    logger.info("worker %s on queue %s, data in %s", name, settings.queue_name, settings.home)
    try:
        return worker.work(burst=burst, logging_level=log_level, with_scheduler=False)
    finally:
        maintenance.stop()
        services.close()
