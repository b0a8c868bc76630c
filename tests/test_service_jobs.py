"""Job records, leases, fencing, recovery and the Redis cache, against a real Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from rq.job import Job

from hardneg.core.cache import Cache, cache_key
from hardneg.service.cache import RedisCache
from hardneg.service.jobs.artifacts import publish, read_page, remove_temp_files
from hardneg.service.jobs.job_progress import (
    JobCancelled,
    JobProgress,
    JobSupersededError,
    LeaseKeeper,
)
from hardneg.service.jobs.records import JobRecord, new_job_id
from hardneg.service.jobs.recovery import reap, recover
from hardneg.service.jobs.runner import _start
from hardneg.service.jobs.services import Services
from hardneg.service.jobs.store import Ack
from hardneg.service.settings import Settings
from tests.test_service_support import REDIS_URL, purge, unique_prefix


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    prefix = unique_prefix()
    settings = Settings(
        home=tmp_path,
        redis_url=REDIS_URL,
        redis_prefix=prefix,
        job_max_attempts=2,
        job_lease_seconds=0.3,
        cache_ttl_seconds=60,
    )
    built = Services.connect(settings)
    yield built
    built.close()
    purge(prefix)


def queued(services: Services) -> JobRecord:
    record = JobRecord(
        id=new_job_id(), kind="evaluate", params={}, corpus_id=None, dedupe_key="k", max_attempts=2
    )
    services.jobs.create(record)
    return record


def start(services: Services, record: JobRecord, lease_ms: int = 300) -> JobRecord:
    started = services.jobs.transition(
        record.id, {"queued"}, partial(_start, worker="w", pid=1), record.attempt, lease_ms
    )
    assert started is not None and started.state == "running"
    return started


def test_record_round_trips_through_redis(services: Services) -> None:
    record = queued(services).with_event("hello")
    services.jobs.create(record)
    assert services.jobs.get(record.id) == record
    assert services.jobs.counts_by_state()["queued"] == 1


def test_only_one_start_wins_and_progress_is_fenced_by_attempt(services: Services) -> None:
    record = queued(services)
    start(services, record)
    again = services.jobs.transition(record.id, {"queued"}, lambda r: r, record.attempt)
    assert again is None  # the second worker to pick it up does nothing
    assert services.jobs.progress(record.id, 1, 3, 10, "working", 300) is Ack.OK
    assert services.jobs.get(record.id).done == 3  # type: ignore[union-attr]
    assert services.jobs.progress(record.id, 2, 5, 10, "zombie", 300) is Ack.GONE
    assert services.jobs.get(record.id).stage == "working"  # type: ignore[union-attr]


def test_a_live_lease_is_never_recovered(services: Services) -> None:
    record = start(services, queued(services), lease_ms=5000)
    assert recover(services, record.id, "test") is None
    assert services.jobs.get(record.id).state == "running"  # type: ignore[union-attr]


def test_an_expired_lease_retries_then_fails_with_the_reason(services: Services) -> None:
    record = start(services, queued(services))
    time.sleep(0.4)  # lease (300 ms) expires: the "worker" died
    retried = recover(services, record.id, "no heartbeat")
    assert retried is not None and (retried.state, retried.attempt) == ("queued", 2)
    rq_job = Job.fetch(retried.rq_id(services.queue.name), connection=services.raw)
    assert rq_job.args == (record.id, 2)  # the next attempt is on the queue
    # the old attempt is fenced out: it learns it was superseded
    assert services.jobs.renew(record.id, 1, 300) is Ack.GONE
    second = start(services, retried)
    time.sleep(0.4)
    failed = recover(services, second.id, "no heartbeat")
    assert failed is not None and failed.state == "failed"
    assert "attempt 2 of 2" in (failed.error or "") and "no heartbeat" in (failed.error or "")
    assert [e.split(" ", 1)[1][:14] for e in failed.events if "lost" in e] == [
        "attempt 1 lost",
        "worker lost du",
    ]


def test_reap_settles_every_lost_job_and_requeues_vanished_queue_entries(
    services: Services,
) -> None:
    lost = start(services, queued(services))
    orphan = queued(services)  # created but never enqueued (e.g. the API died in between)
    time.sleep(0.4)
    settings = services.settings.model_copy(update={"reap_interval_seconds": 0.01})
    counts = reap(Services.connect(settings))
    assert counts["recovered"] == 1 and counts["requeued"] == 1
    assert services.jobs.get(lost.id).state == "queued"  # type: ignore[union-attr]
    assert Job.exists(orphan.rq_id(services.queue.name), connection=services.raw)


def test_cancel_reaches_a_running_job_through_its_progress_callback(services: Services) -> None:
    record = start(services, queued(services), lease_ms=5000)
    with LeaseKeeper(services.jobs, record.id, 1, lease_seconds=0.3) as lease:
        progress = JobProgress(services.jobs, record.id, 1, lease)
        progress(1, 10, "working")
        services.jobs.request_cancel(record.id)
        with pytest.raises(JobCancelled):
            for step in range(2, 100):
                progress(step, 10, "working")
                time.sleep(0.05)


def test_a_superseded_attempt_stops_at_its_next_report(services: Services) -> None:
    record = start(services, queued(services))
    with LeaseKeeper(services.jobs, record.id, 1, lease_seconds=0.3) as lease:
        progress = JobProgress(services.jobs, record.id, 1, lease)
        services.text.hset(services.keys.job(record.id), "attempt", "2")  # another attempt owns it
        with pytest.raises(JobSupersededError):
            progress(1, 10, "next stage")


def test_redis_cache_is_a_core_cache_with_ttl_and_shared_counters(services: Services) -> None:
    cache: Cache = services.cache
    key = cache_key("candidates", {"corpus": "abc", "k": 100})
    assert cache.get(key) is None
    cache.set(key, b"\x00payload")
    assert cache.get(key) == b"\x00payload"
    assert 0 < int(services.raw.ttl(services.cache.keys.value(key))) <= 60
    other = RedisCache(
        services.raw, services.raw, services.keys.namespace, 60
    )  # another process, same Redis
    assert other.get(key) == b"\x00payload"
    assert other.get(cache_key("llm", {"prompt": "x"})) is None
    assert other.counters() == {"candidates": (2, 1), "llm": (0, 1)}


def test_published_results_page_and_convert(tmp_path: Path) -> None:
    folder = tmp_path / "job"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "weights.bin").write_bytes(b"w" * 10)
    rows = "".join(
        f'{{"query_id": "q{i}", "hits": [{{"id": "d{i}", "score": 0.5}}]}}\n' for i in range(25)
    )
    (folder / "results.jsonl").write_text(rows + "\n")
    (folder / ".half.tmp").write_text("left by a killed write")
    assert remove_temp_files(folder) == 1
    artifacts, _ = publish(
        folder,
        {"results.jsonl": folder / "results.jsonl", "model": folder / "model"},
        "results.jsonl",
    )
    assert set(artifacts) == {"results.jsonl", "results.parquet", "model.tar.gz"}
    page, total = read_page(folder / "results.jsonl", 20, 10)
    assert total == 25 and [r["query_id"] for r in page] == [f"q{i}" for i in range(20, 25)]
    import pyarrow.parquet as pq

    assert pq.read_table(folder / "results.parquet").num_rows == 25
    with pytest.raises(ValueError, match="outside"):
        publish(folder, {"x": tmp_path / "elsewhere.json"}, None)
