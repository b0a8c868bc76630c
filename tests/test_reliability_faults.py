"""Faults against real processes: Redis, ``hardneg serve`` (uvicorn) and ``hardneg worker``.

Each test breaks one thing in the middle of real work and checks what the service guarantees:

- a worker killed (SIGKILL) mid-training: the job resumes from its last checkpoint and ends with
  the metrics of an uninterrupted run;
- Redis restarted (its own server, append-only file on) mid-job: no job record or result is
  lost, and the job finishes;
- the API killed mid-upload: no corpus is registered, and the upload's scratch folder is swept;
- the LLM endpoint times out or answers garbage: each call is retried, then the job fails saying
  so, and nothing from the failed calls is cached;
- the disk fills up while a job writes its outputs: the job fails naming ``ENOSPC``, keeps no
  artifact, and the same request succeeds once there is room.

The stack runs on its own Redis (``redis-server --appendonly yes`` on a free port), with an
OpenAI-compatible LLM endpoint scripted on loopback (``tests.test_llm_fakes``).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.test_llm_fakes import FakeOpenAI, Reply, fake_openai
from tests.test_service_e2e import downloading, register
from tests.test_service_pipelines import mine, scifact_slice
from tests.test_service_support import (
    AUTH,
    Stack,
    corpus_files_left,
    free_port,
    jsonl,
    running_stack,
    wait_for,
)

LEASE = 2.0
FAST_RECOVERY = {
    "HARDNEG_JOB_LEASE_SECONDS": str(LEASE),
    "HARDNEG_REAP_INTERVAL_SECONDS": "0.5",
    "HARDNEG_WORKER_HEARTBEAT_SECONDS": "0.5",
    "HARDNEG_JOB_MAX_ATTEMPTS": "3",
}
LLM_RETRIES = 2  # so 3 calls per generation
TRAIN_STEPS, SAVE_STEPS = 4, 2  # a checkpoint at step 2; killed before step 4


class RedisServer:
    """A ``redis-server`` of our own with the append-only file on, restartable in place."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--appendonly", "yes", "--save", "", "--dir", str(self.folder)]
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

        def answers() -> bool:
            with contextlib.suppress(redis.RedisError), self.client() as client:
                return bool(client.ping())
            return False

        wait_for(answers, 30, "redis-server to answer")

    def stop(self) -> None:
        """SHUTDOWN: Redis flushes its append-only file and exits."""
        with contextlib.suppress(redis.ConnectionError), self.client() as client:
            client.shutdown()
        if self.process is not None:
            self.process.wait(timeout=30)

    def run_id(self) -> str:
        with self.client() as client:
            return str(client.info("server")["run_id"])


class Endpoint:
    """What the scripted LLM answers: ``timeout`` (too late), ``garbage`` or ``ok``."""

    def __init__(self) -> None:
        self.mode = "ok"

    def __call__(self, payload: dict[str, object]) -> Reply:
        if self.mode == "timeout":
            return Reply(content="far too late", delay_s=3.0)
        if self.mode == "garbage":
            return Reply(raw=b"<html><body>502 Bad Gateway from a proxy</body></html>")
        return Reply(content="Red foxes hunt alone at dusk in the open grasslands of Europe.")


@pytest.fixture(scope="module")
def aof_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-aof"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def llm() -> Iterator[tuple[FakeOpenAI, Endpoint]]:
    endpoint = Endpoint()
    with fake_openai(endpoint) as server:
        yield server, endpoint


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    aof_redis: RedisServer,
    llm: tuple[FakeOpenAI, Endpoint],
) -> Iterator[Stack]:
    llm_settings = {
        "HARDNEG_LLM_BACKEND": "openai",
        "HARDNEG_LLM_BASE_URL": llm[0].url,
        "HARDNEG_LLM_MODEL": "tiny",
        "HARDNEG_LLM_TIMEOUT_SECONDS": "0.5",
        "HARDNEG_LLM_MAX_RETRIES": str(LLM_RETRIES),
    }
    with running_stack(
        tmp_path_factory.mktemp("faults"),
        HARDNEG_REDIS_URL=aof_redis.url,
        **FAST_RECOVERY,
        **llm_settings,
    ) as built:
        yield built


def upload_beir(
    stack: Stack, name: str, corpus: bytes, queries: bytes, qrels: dict[str, bytes]
) -> str:
    """Upload a corpus with its queries and qrels; returns the corpus id."""
    created = stack.client.post("/v1/corpora", params={"name": name}, content=corpus)
    assert created.status_code == 201, created.text
    corpus_id = str(created.json()["id"])
    assert stack.client.put(f"/v1/corpora/{corpus_id}/queries", content=queries).is_success
    for split, tsv in qrels.items():
        response = stack.client.put(f"/v1/corpora/{corpus_id}/qrels/{split}", content=tsv)
        assert response.status_code == 200, response.text
    return corpus_id


def upload_scifact_slice(stack: Stack, scifact_dir: Path, name: str) -> str:
    return upload_beir(stack, name, *scifact_slice(scifact_dir))


@pytest.fixture(scope="module")
def scifact_id(stack: Stack, scifact_dir: Path) -> str:
    return upload_scifact_slice(stack, scifact_dir, "scifact-slice")


@pytest.fixture(scope="module")
def mined_job(stack: Stack, scifact_id: str) -> str:
    job = mine(stack, scifact_id, num_negatives=3)
    assert job["state"] == "succeeded", job
    return str(job["id"])


def redis_keys(stack: Stack, redis_url: str, pattern: str) -> list[bytes]:
    prefix = stack.processes.env["HARDNEG_REDIS_PREFIX"]
    with redis.Redis.from_url(redis_url) as client:
        return sorted(client.scan_iter(match=f"{prefix}:{pattern}", count=1000))


def all_jobs(stack: Stack) -> dict[str, dict[str, Any]]:
    page = stack.client.get("/v1/jobs", params={"limit": 500}).json()
    return {item["id"]: item for item in page["items"]}


def stored_corpora(home: Path) -> list[str]:
    folder = home / "corpora"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def scratch_folders(home: Path) -> list[Path]:
    uploads = home / "uploads"
    return sorted(uploads.glob(".*.tmp")) if uploads.is_dir() else []


# ---- a worker killed in the middle of training ---------------------------------------------


def test_worker_killed_mid_training_resumes_from_its_checkpoint_with_the_same_metrics(
    stack: Stack, scifact_id: str, mined_job: str
) -> None:
    config = {
        "max_steps": TRAIN_STEPS,
        "per_device_batch_size": 2,
        "max_doc_length": 32,
        "save_steps": SAVE_STEPS,
        "learning_rate": 3e-4,  # large enough that four steps change the rankings
        "warmup_ratio": 0.0,
    }
    body = {
        "corpus_id": scifact_id,
        "params": {"trainer": "baseline", "negatives_job": mined_job, "config": config},
    }
    submitted = stack.client.post("/v1/jobs/train", json=body)
    assert submitted.status_code == 202, submitted.text
    clean = stack.wait_job(submitted.json()["id"], {"succeeded", "failed"}, timeout=300)
    assert clean["state"] == "succeeded" and clean["attempt"] == 1, clean

    again = stack.client.post("/v1/jobs/train", json=body | {"force": True})
    assert again.status_code == 202, again.text
    job_id = again.json()["id"]
    running: dict[str, Any] = wait_for(  # type: ignore[assignment]
        lambda: (
            (r := stack.job(job_id))["state"] != "queued"
            and (
                r["state"] != "running"
                or (r["stage"] == "training baseline" and r["done"] >= SAVE_STEPS)
            )
            and r
        ),
        300,
        "training to pass its first checkpoint",
    )
    assert running["state"] == "running" and running["done"] < TRAIN_STEPS, running  # not too late
    stack.kill_run(running)
    stack.ensure_worker()
    done = stack.wait_job(job_id, {"succeeded", "failed"}, timeout=300)
    assert done["state"] == "succeeded" and done["attempt"] == 2, done

    events = "\n".join(done["events"])
    assert "attempt 1 lost" in events
    resumed = re.search(r"attempt 2 resumes from the checkpoint at step (\d+)", events)
    assert resumed is not None, events  # it continued; it did not start again from step 0
    step = int(resumed.group(1))
    assert step == SAVE_STEPS and done["stats"]["resumed_from"] == step
    assert done["stats"]["steps"] == TRAIN_STEPS
    expected = clean["stats"]["metrics_after"]
    assert expected != clean["stats"]["metrics_before"]  # training moved the model
    assert done["stats"]["metrics_before"] == pytest.approx(clean["stats"]["metrics_before"])
    after = done["stats"]["metrics_after"]
    assert after["ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=0.002)
    assert after == pytest.approx(expected, abs=0.002)


# ---- Redis restarted in the middle of a job --------------------------------------------------


def test_redis_restart_mid_job_loses_no_record_or_result(
    stack: Stack, aof_redis: RedisServer, mined_job: str
) -> None:
    before = all_jobs(stack)
    results = stack.client.get(f"/v1/jobs/{mined_job}/results", params={"limit": 500}).json()
    corpora = stack.client.get("/v1/corpora", params={"limit": 500}).json()["items"]
    worker = stack.ensure_worker()

    corpus, job_id = register(stack, "slow-restart")  # a download paced by the mirror
    downloading(stack, job_id, 16_000)
    first_run = aof_redis.run_id()
    aof_redis.stop()
    time.sleep(1.0)  # the job keeps downloading with Redis gone
    aof_redis.start()
    assert aof_redis.run_id() != first_run  # a new server, loaded from the append-only file

    done = stack.wait_job(job_id, {"succeeded", "failed"}, timeout=120)
    assert done["state"] == "succeeded", done
    assert stack.client.get(f"/v1/corpora/{corpus['id']}").json()["state"] == "ready"
    assert worker.poll() is None  # the worker rode out the restart

    after = all_jobs(stack)
    assert set(before) <= set(after)
    for job_id_before, record in before.items():
        if record["state"] in ("succeeded", "failed", "cancelled"):
            assert after[job_id_before] == record
    same = stack.client.get(f"/v1/jobs/{mined_job}/results", params={"limit": 500}).json()
    assert same == results
    again = stack.client.get("/v1/corpora", params={"limit": 500}).json()["items"]
    assert {c["id"] for c in corpora} <= {c["id"] for c in again}


# ---- the API killed in the middle of an upload -----------------------------------------------


def big_corpus_gz(documents: int) -> bytes:
    words = [f"w{n}" for n in range(5000)]
    rng = random.Random(5)
    rows = [
        {"_id": f"doc{i}", "title": f"t{i}", "text": " ".join(rng.choices(words, k=60))}
        for i in range(documents)
    ]
    return gzip.compress(jsonl(rows))


def test_api_killed_mid_upload_registers_nothing_and_its_scratch_folder_is_swept(
    stack: Stack,
) -> None:
    body = big_corpus_gz(20_000)
    before = {
        c["id"] for c in stack.client.get("/v1/corpora", params={"limit": 500}).json()["items"]
    }
    stored_before = stored_corpora(stack.home)
    sent = [0]

    def slowly() -> Iterator[bytes]:
        for offset in range(0, len(body), 16_384):
            sent[0] += len(body[offset : offset + 16_384])
            yield body[offset : offset + 16_384]
            time.sleep(0.02)

    outcome: dict[str, object] = {}

    def upload() -> None:
        try:
            outcome["response"] = httpx.post(
                stack.processes.base_url + "/v1/corpora",
                params={"name": "killed-upload"},
                content=slowly(),
                headers=AUTH,
                timeout=60,
            )
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    client = threading.Thread(target=upload)
    client.start()
    wait_for(
        lambda: sent[0] > 200_000 and scratch_folders(stack.home),
        30,
        f"the upload to run ({outcome})",
    )
    (live,) = scratch_folders(stack.home)
    time.sleep(1.5)  # three maintenance passes: a live upload's folder is never swept
    assert live.is_dir() and (live / "body").stat().st_size > 100_000

    (api,) = [p for p in stack.processes.started if "serve" in list(p.args) and p.poll() is None]
    api.send_signal(signal.SIGKILL)
    api.wait()
    client.join(timeout=60)
    assert "error" in outcome and sent[0] < len(body), outcome  # it died mid-upload

    stack.processes.serve()  # the same port, data directory and Redis
    wait_for(lambda: not scratch_folders(stack.home), 10, "the dead upload's folder to go")
    after = {
        c["id"] for c in stack.client.get("/v1/corpora", params={"limit": 500}).json()["items"]
    }
    assert after == before
    assert stored_corpora(stack.home) == stored_before
    assert corpus_files_left(stack.home) == []


# ---- the LLM endpoint times out or answers garbage -------------------------------------------


@pytest.mark.parametrize(
    ("mode", "symptom"), [("timeout", "timed out"), ("garbage", "malformed response")]
)
def test_failing_llm_endpoint_is_retried_then_fails_the_job_and_caches_nothing(
    stack: Stack,
    aof_redis: RedisServer,
    llm: tuple[FakeOpenAI, Endpoint],
    scifact_id: str,
    mode: str,
    symptom: str,
) -> None:
    server, endpoint = llm
    seed = {"timeout": 1, "garbage": 2}[mode]  # a request of its own for each case
    params = {"method": "llm", "llm_max_queries": 1, "num_negatives": 1, "seed": seed}
    cached = redis_keys(stack, aof_redis.url, "cache:llm:*")
    endpoint.mode = mode
    calls = len(server.requests)
    failed = mine(stack, scifact_id, **params)
    assert failed["state"] == "failed", failed
    assert f"gave up after {LLM_RETRIES + 1} attempts" in failed["error"], failed["error"]
    assert symptom in failed["error"] and "chat/completions" in failed["error"]
    assert failed["attempt"] == 1  # a clear failure, not a lost worker
    assert len(server.requests) - calls == LLM_RETRIES + 1
    assert failed["artifacts"] == {}
    assert stack.client.get(f"/v1/jobs/{failed['id']}/results").status_code == 409
    assert redis_keys(stack, aof_redis.url, "cache:llm:*") == cached

    endpoint.mode = "ok"  # the same request once the endpoint answers: its answer is cached
    recovered = mine(stack, scifact_id, **params)
    assert recovered["state"] == "succeeded" and recovered["id"] != failed["id"], recovered
    assert len(redis_keys(stack, aof_redis.url, "cache:llm:*")) == len(cached) + 1


# ---- the disk fills up during mining ---------------------------------------------------------


@contextlib.contextmanager
def small_filesystem(folder: Path, size: str) -> Iterator[bool]:
    """A tmpfs of ``size`` mounted at ``folder``; yields False where mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
    mounted = (
        shutil.which("mount") is not None
        and subprocess.run(mount, capture_output=True).returncode == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "--lazy", str(folder)], check=True)


def fill(folder: Path, leave: int) -> Path:
    """A file that takes all the free space under ``folder`` but ``leave`` bytes."""
    stats = os.statvfs(folder)
    free = stats.f_bavail * stats.f_frsize
    ballast = folder / "ballast.bin"
    fd = os.open(ballast, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        os.posix_fallocate(fd, 0, free - leave)
    finally:
        os.close(fd)
    return ballast


def test_full_disk_during_mining_fails_naming_enospc_and_keeps_no_artifact(
    tmp_path: Path, scifact_dir: Path
) -> None:
    """The data directory is a 16 MB tmpfs, filled up before the job writes its outputs.

    Where mounting is not permitted (an unprivileged container), the worker gets a file-size
    limit instead (RLIMIT_FSIZE), and the job must fail naming EFBIG.
    """
    with (
        small_filesystem(tmp_path / "home", "16m") as mounted,
        running_stack(tmp_path, **FAST_RECOVERY) as stack,
    ):
        corpus_id = upload_scifact_slice(stack, scifact_dir, "scifact-small-disk")
        first = mine(stack, corpus_id, num_negatives=2)  # builds the index, caches candidates
        assert first["state"] == "succeeded", first
        room = int(first["artifacts"]["mined.jsonl"]["bytes"]) // 2
        worker = stack.ensure_worker()
        if mounted:
            ballast, code = fill(stack.home, leave=room), "ENOSPC"
        else:
            unlimited = resource.prlimit(worker.pid, resource.RLIMIT_FSIZE)
            resource.prlimit(worker.pid, resource.RLIMIT_FSIZE, (room, unlimited[1]))
            code = "EFBIG"

        failed = mine(stack, corpus_id, num_negatives=4)
        assert failed["state"] == "failed", failed
        assert f"out of disk space ({code}" in failed["error"], failed["error"]
        assert failed["artifacts"] == {} and failed["attempt"] == 1
        assert not (stack.home / "jobs" / failed["id"]).exists()
        assert stack.client.get(f"/v1/jobs/{failed['id']}/results").status_code == 409
        assert corpus_files_left(stack.home) == []  # no half-written file anywhere

        # the job before it is whole: its mined file parses and matches its results
        mined = stack.client.get(f"/v1/jobs/{first['id']}/artifacts/mined.jsonl").text
        page = stack.client.get(f"/v1/jobs/{first['id']}/results", params={"limit": 500}).json()
        assert [json.loads(line) for line in mined.splitlines()] == page["items"]

        if mounted:
            ballast.unlink()
        else:
            resource.prlimit(worker.pid, resource.RLIMIT_FSIZE, unlimited)
        retried = mine(stack, corpus_id, num_negatives=4)  # a new job: the failed one is kept
        assert retried["state"] == "succeeded" and retried["id"] != failed["id"], retried
