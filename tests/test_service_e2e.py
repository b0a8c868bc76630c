"""End to end against real processes: Redis, ``hardneg serve`` (uvicorn) and ``hardneg worker``.

A BEIR mirror on loopback serves real zips slowly (or stalls), so downloads run long enough to
be watched, cancelled and killed mid-way; a killed worker's job must be retried (resuming the
download) or failed with the reason, never left running.
"""

from __future__ import annotations

import gzip
import io
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from hardneg.core.beir import find_corpus_file, load_corpus
from tests.conftest import TINY_DOCS, TINY_QUERIES, write_beir
from tests.test_service_support import (
    Stack,
    alive,
    corpus_files_left,
    jsonl,
    qrels_tsv,
    running_stack,
    wait_for,
)

LEASE = 1.5


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("service"),
        HARDNEG_JOB_LEASE_SECONDS=str(LEASE),
        HARDNEG_REAP_INTERVAL_SECONDS="0.5",
        HARDNEG_WORKER_HEARTBEAT_SECONDS="0.5",
        HARDNEG_CANCEL_GRACE_SECONDS="1.5",
        HARDNEG_JOB_MAX_ATTEMPTS="2",
    ) as built:
        yield built


@pytest.fixture(scope="module")
def corpus_id(stack: Stack) -> str:
    client = stack.client
    corpus = client.post("/v1/corpora?name=tiny", content=gzip.compress(jsonl(TINY_DOCS))).json()
    assert client.put(f"/v1/corpora/{corpus['id']}/queries", content=jsonl(TINY_QUERIES)).is_success
    assert client.put(f"/v1/corpora/{corpus['id']}/qrels/test", content=qrels_tsv()).is_success
    return str(corpus["id"])


def test_key_is_required_on_the_real_server(stack: Stack) -> None:
    base = stack.processes.base_url
    assert httpx.get(f"{base}/healthz").status_code == 200
    assert httpx.get(f"{base}/v1/jobs").status_code == 401
    assert (
        httpx.get(f"{base}/v1/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    )
    assert httpx.get(f"{base}/docs").status_code == 200


def test_evaluate_job_end_to_end(stack: Stack, corpus_id: str, tmp_path: Path) -> None:
    client = stack.client
    submitted = client.post(
        "/v1/jobs/evaluate", json={"corpus_id": corpus_id, "params": {"top_k": 2}}
    )
    assert submitted.status_code == 202, submitted.text
    job = stack.wait_job(submitted.json()["id"], {"succeeded", "failed"})
    assert job["state"] == "succeeded", job
    assert job["progress"] == 1.0 and job["done"] == job["total"] > 0 and job["attempt"] == 1
    assert any("started on" in e for e in job["events"])

    # the service computes what the in-process pipeline computes
    from hardneg.service.pipelines.evaluate import run_evaluation
    from hardneg.service.settings import Settings
    from hardneg.service.specs import EvaluateSpec

    local = run_evaluation(
        EvaluateSpec(), str(write_beir(tmp_path / "tiny")), Settings(home=tmp_path)
    )
    assert job["stats"]["metrics"] == pytest.approx(local.evaluation.mean)

    first = client.get(f"/v1/jobs/{job['id']}/results", params={"offset": 0, "limit": 2}).json()
    rest = client.get(f"/v1/jobs/{job['id']}/results", params={"offset": 2, "limit": 2}).json()
    assert first["total"] == 3 and len(first["items"]) == 2 and len(rest["items"]) == 1
    rows = first["items"] + rest["items"]
    assert [r["query_id"] for r in rows] == ["q1", "q2", "q3"]
    assert rows[0]["hits"][0]["id"] == "d2" and len(rows[0]["hits"]) <= 2

    files = job["artifacts"]
    assert set(files) == {"metrics.json", "results.jsonl", "results.parquet"}
    raw = client.get(f"/v1/jobs/{job['id']}/artifacts/results.jsonl")
    assert raw.headers["content-type"].startswith("application/x-ndjson")
    assert [json.loads(line) for line in raw.text.splitlines()] == rows
    parquet = client.get(f"/v1/jobs/{job['id']}/artifacts/results.parquet").content
    assert pq.read_table(io.BytesIO(parquet)).column("query_id").to_pylist() == ["q1", "q2", "q3"]
    metrics = client.get(f"/v1/jobs/{job['id']}/artifacts/metrics.json").json()
    assert metrics["metrics"] == job["stats"]["metrics"]
    assert client.get(f"/v1/jobs/{job['id']}/artifacts/../../x").status_code == 404

    assert stack.metric("hardneg_jobs", '{state="succeeded"}') >= 1
    assert stack.metric("hardneg_cache_misses_total", '{namespace="candidates"}') >= 1
    assert stack.metric("hardneg_workers_alive") == 1


def test_repeat_is_shared_and_a_forced_rerun_hits_the_cache(stack: Stack, corpus_id: str) -> None:
    client = stack.client
    body = {"corpus_id": corpus_id, "params": {"k1": 1.1}}
    first = stack.wait_job(client.post("/v1/jobs/evaluate", json=body).json()["id"], {"succeeded"})
    assert first["stats"]["candidates_cached"] is False
    repeat = client.post("/v1/jobs/evaluate", json=body)
    assert repeat.status_code == 200 and repeat.json()["id"] == first["id"]
    assert repeat.json()["deduplicated"] is True

    hits = stack.metric("hardneg_cache_hits_total", '{namespace="candidates"}')
    forced = client.post("/v1/jobs/evaluate", json=body | {"force": True}).json()
    assert forced["id"] != first["id"]
    rerun = stack.wait_job(forced["id"], {"succeeded"})
    assert rerun["stats"]["candidates_cached"] is True
    assert rerun["stats"]["metrics"] == first["stats"]["metrics"]
    assert stack.metric("hardneg_cache_hits_total", '{namespace="candidates"}') == hits + 1


def register(stack: Stack, name: str) -> tuple[dict[str, Any], str]:
    response = stack.client.post("/v1/corpora/beir", json={"name": name})
    assert response.status_code == 202, response.text
    return response.json(), str(response.json()["job_id"])


def downloading(stack: Stack, job_id: str, at_least: int) -> dict[str, Any]:
    def far_enough() -> dict[str, Any] | None:
        record = stack.job(job_id)
        ok = record["state"] == "running" and record["stage"] == "downloading"
        return record if ok and record["done"] >= at_least else None

    return wait_for(far_enough, 60, f"{job_id} to download {at_least} bytes")  # type: ignore[return-value]


def test_register_beir_by_name_watch_progress(stack: Stack, tmp_path: Path) -> None:
    corpus, job_id = register(stack, "slow-watch")
    assert corpus["state"] == "pending"
    seen: set[int] = set()
    while (record := stack.job(job_id))["state"] in ("queued", "running"):
        if record["stage"] == "downloading":
            seen.add(record["done"])
        time.sleep(0.1)
    assert record["state"] == "succeeded", record
    assert len(seen) >= 3, seen  # progress moved while we watched
    ready = stack.client.get(f"/v1/corpora/{corpus['id']}").json()
    expected = load_corpus(find_corpus_file(write_beir(tmp_path / "t")))
    assert ready["state"] == "ready" and ready["documents"] == 5 and ready["splits"] == {"test": 3}
    assert ready["fingerprint"] == expected.fingerprint
    assert corpus_files_left(stack.home) == []


def test_cancel_stops_a_running_download_and_leaves_nothing(stack: Stack) -> None:
    corpus, job_id = register(stack, "slow-cancel")
    record = downloading(stack, job_id, 8192)
    assert stack.client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    asked = time.monotonic()
    cancelled = stack.wait_job(job_id, {"cancelled", "succeeded", "failed"}, timeout=20)
    assert cancelled["state"] == "cancelled" and time.monotonic() - asked < 5
    time.sleep(0.3)  # the mirror may push one more chunk into the closed socket's buffer
    sent = stack.mirror.sent["slow-cancel"]
    time.sleep(0.6)
    assert stack.mirror.sent["slow-cancel"] == sent  # nobody is downloading any more
    assert sent < stack.mirror.filler_bytes  # stopped well before the end
    wait_for(lambda: not alive(int(record["pid"])), 10, "the work horse to finish")
    assert corpus_files_left(stack.home) == []
    view = stack.client.get(f"/v1/corpora/{corpus['id']}").json()
    assert view["state"] == "failed" and "cancel" in view["error"]


def test_cancel_kills_a_job_that_stopped_reporting(stack: Stack) -> None:
    _, job_id = register(stack, "stall-hard")
    record = downloading(stack, job_id, 4096)
    time.sleep(0.5)  # the mirror stalls: no more progress reports
    assert stack.client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    cancelled = stack.wait_job(job_id, {"cancelled", "failed"}, timeout=30)
    assert cancelled["state"] == "cancelled", cancelled
    wait_for(lambda: not alive(int(record["pid"])), 10, "the work horse to be killed")
    assert corpus_files_left(stack.home) == []
    stack.ensure_worker()  # the worker survived killing its horse
    assert stack.worker is not None and stack.worker.poll() is None


def test_killed_worker_job_is_retried_and_resumes_its_download(stack: Stack) -> None:
    corpus, job_id = register(stack, "slow-kill")
    record = downloading(stack, job_id, 40_000)
    stack.kill_run(record)
    assert stack.job(job_id)["state"] in ("running", "queued")  # lost, not yet noticed
    stack.ensure_worker()
    done = stack.wait_job(job_id, {"succeeded", "failed"})
    assert done["state"] == "succeeded" and done["attempt"] == 2, done
    assert any("attempt 1 lost" in e for e in done["events"])
    resumed_from = [start for name, start in stack.mirror.requests if name == "slow-kill"]
    assert resumed_from[0] == 0 and resumed_from[-1] > 0, resumed_from  # HTTP Range resume
    assert stack.client.get(f"/v1/corpora/{corpus['id']}").json()["state"] == "ready"


def test_job_lost_on_every_attempt_fails_with_the_reason(stack: Stack) -> None:
    _, job_id = register(stack, "slow-doomed")
    stack.kill_run(downloading(stack, job_id, 20_000))
    stack.ensure_worker()
    second = wait_for(
        lambda: (
            (r := stack.job(job_id))["attempt"] == 2
            and r["state"] == "running"
            and r["done"] > 0
            and r
        ),
        60,
        "the second attempt",
    )
    stack.kill_run(second)  # type: ignore[arg-type]
    failed = stack.wait_job(job_id, {"failed", "succeeded"}, timeout=30)
    assert failed["state"] == "failed" and "attempt 2 of 2" in failed["error"], failed
    assert "no heartbeat" in failed["error"] or "terminated" in failed["error"]
    assert corpus_files_left(stack.home) == []
    stack.ensure_worker()


def test_records_and_artifacts_survive_restarts(stack: Stack, corpus_id: str) -> None:
    jobs = stack.client.get("/v1/jobs", params={"kind": "evaluate", "state": "succeeded"}).json()
    before = jobs["items"][-1]
    for process in list(stack.processes.started):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    stack.processes.serve()  # same port, same data directory, same Redis
    assert stack.client.get("/readyz").status_code == 503  # no worker yet
    after = stack.job(before["id"])
    assert after == before
    download = stack.client.get(f"/v1/jobs/{before['id']}/artifacts/results.jsonl")
    assert download.status_code == 200 and len(download.text.splitlines()) == 3
    stack.worker = None
    stack.ensure_worker()
    body = {"corpus_id": corpus_id, "params": {"k1": 0.5}}
    fresh = stack.wait_job(
        stack.client.post("/v1/jobs/evaluate", json=body).json()["id"], {"succeeded"}
    )
    assert fresh["stats"]["num_queries"] == 3
