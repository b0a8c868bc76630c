"""Stored state that never disagrees with itself: Redis refusing writes, racing writers on one
corpus, deleting a corpus that jobs or uploads still use, orphaned folders.

- a Redis that refuses writes (out of memory under ``noeviction``; a read-only replica) makes
  every write answer 503, and no file and no record changes (a private ``redis-server`` each);
- a queries upload and a qrels upload at the same moment, each valid against the other's old
  file: at most one wins, and the stored files pass the consistency check, with a record whose
  version is the files' version;
- a delete during an upload to the corpus: the upload gets 404 and leaves no file behind;
- a corpus with a queued job: delete answers 409 naming it; ``force=true`` cancels it;
- a corpus folder no record names (an API killed between the two) is swept at API start.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from hardneg.core.beir import check_qrels, find_corpus_file, load_corpus, load_qrels, load_queries
from hardneg.service.jobs.corpora import content_version
from tests.conftest import TINY_DOCS, TINY_QUERIES
from tests.test_reliability_input import Context, prepare, stored_state
from tests.test_reliability_round_two import Server, round_two_server
from tests.test_service_support import (
    AUTH,
    Processes,
    free_port,
    jsonl,
    qrels_tsv,
    service_env,
    unique_prefix,
    wait_for,
)

QUERIES_123 = jsonl(TINY_QUERIES)
QUERIES_12 = jsonl(TINY_QUERIES[:2])
QRELS_12 = qrels_tsv([("q1", "d2", 1), ("q2", "d3", 1)])
QRELS_3 = qrels_tsv([("q3", "d4", 1)])


# ---- a private Redis ------------------------------------------------------------------------


@contextlib.contextmanager
def private_redis(folder: Path, *args: str) -> Iterator[str]:
    """A ``redis-server`` of our own (its memory limit and role are ours to change)."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    command = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(
        [*command, "--dir", str(folder), *args], stdout=subprocess.DEVNULL, start_new_session=True
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for(lambda: _pings(url), 20, "redis-server to start")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


def _pings(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url).ping())
    except redis.RedisError:
        return False


@contextlib.contextmanager
def api_on(
    redis_url: str, prefix: str, home: Path, logs: Path, allowed: Path
) -> Iterator[Processes]:
    env = service_env(prefix, home, HARDNEG_REDIS_URL=redis_url, HARDNEG_ALLOWED_ROOTS=str(allowed))
    processes = Processes(env, logs)
    try:
        processes.serve()
        yield processes
    finally:
        processes.stop_all()


def writes(corpus_id: str) -> list[tuple[str, Callable[[httpx.Client], httpx.Response]]]:
    """Every kind of write, each valid, so only Redis can refuse it."""
    return [
        ("queries", lambda c: c.put(f"/v1/corpora/{corpus_id}/queries", content=QUERIES_12)),
        ("qrels", lambda c: c.put(f"/v1/corpora/{corpus_id}/qrels/dev", content=QRELS_12)),
        ("corpus", lambda c: c.post("/v1/corpora?name=more", content=jsonl(TINY_DOCS))),
        (
            "job",
            lambda c: c.post(
                "/v1/jobs/evaluate",
                json={"corpus_id": corpus_id, "params": {"top_k": 7}, "force": True},
            ),
        ),
        ("delete", lambda c: c.delete(f"/v1/corpora/{corpus_id}", params={"force": True})),
    ]


def refused_writes(client: httpx.Client, home: Path, context: Context) -> dict[str, object]:
    outcomes: dict[str, object] = {}
    for name, write in writes(context.corpus):
        before = stored_state(client, home, context.corpus)
        response = write(client)
        outcomes[name] = {
            "status": response.status_code,
            "nothing_stored": stored_state(client, home, context.corpus) == before,
            "message": response.text[:200],
        }
    return outcomes


def orphan_folder(home: Path) -> Path:
    """A corpus folder with no record, two hours old."""
    folder = home / "corpora" / f"c{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    (folder / "corpus.jsonl").write_bytes(jsonl(TINY_DOCS))
    old = time.time() - 7200
    for path in (folder / "corpus.jsonl", folder):
        os.utime(path, (old, old))
    return folder


def run_refusing_redis(root: Path) -> dict[str, object]:
    """Out of memory, then a read-only replica: each write's status and "nothing stored"."""
    allowed = root / "allowed"
    allowed.mkdir(parents=True, exist_ok=True)
    home, prefix = root / "home", unique_prefix()
    results: dict[str, object] = {}
    with private_redis(root / "redis-a") as primary:
        with (
            api_on(primary, prefix, home, root / "logs-a", allowed) as api,
            httpx.Client(base_url=api.base_url, headers=AUTH, timeout=60) as client,
        ):
            context = prepare(client, allowed)
            admin = redis.Redis.from_url(primary)
            admin.config_set("maxmemory-policy", "noeviction")
            admin.config_set("maxmemory", "1")
            try:
                results["oom"] = refused_writes(client, home, context)
            finally:
                admin.config_set("maxmemory", "0")
        orphan = orphan_folder(home)
        port = primary.rsplit(":", 1)[1].split("/")[0]
        with private_redis(root / "redis-b", "--replicaof", "127.0.0.1", port) as replica:
            wait_for(lambda: _synced(replica), 30, "the replica to sync")
            with (
                api_on(replica, prefix, home, root / "logs-b", allowed) as api,
                httpx.Client(base_url=api.base_url, headers=AUTH, timeout=60) as client,
            ):
                results["readonly"] = refused_writes(client, home, context)
        results["orphan_swept"] = not orphan.exists()
    return results


def _synced(url: str) -> bool:
    info = redis.Redis.from_url(url).info("replication")
    return info.get("master_link_status") == "up"


def test_redis_refusing_writes_answers_503_and_changes_nothing(tmp_path: Path) -> None:
    results = run_refusing_redis(tmp_path)
    for mode in ("oom", "readonly"):
        outcomes = results[mode]
        assert isinstance(outcomes, dict)
        for name, outcome in outcomes.items():
            assert outcome["status"] == 503, (mode, name, outcome)
            assert outcome["nothing_stored"], (mode, name, outcome)
    assert results["orphan_swept"], results


# ---- racing writers on one corpus ---------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with round_two_server(tmp_path_factory.mktemp("state")) as built:
        yield built


def new_corpus(client: httpx.Client, queries: bytes, qrels: bytes) -> str:
    corpus_id = str(client.post("/v1/corpora?name=race", content=jsonl(TINY_DOCS)).json()["id"])
    assert client.put(f"/v1/corpora/{corpus_id}/queries", content=queries).status_code == 200
    assert client.put(f"/v1/corpora/{corpus_id}/qrels/test", content=qrels).status_code == 200
    return corpus_id


def consistent(server: Server, corpus_id: str) -> bool:
    """The project's own check on the stored files, and the record's version is theirs."""
    record = server.client.get(f"/v1/corpora/{corpus_id}").json()
    folder = server.home / "corpora" / corpus_id
    corpus = load_corpus(find_corpus_file(folder))
    qrels_path = folder / "qrels" / "test.tsv"
    check_qrels(qrels_path, load_qrels(qrels_path), load_queries(folder / "queries.jsonl"), corpus)
    return bool(record["version"] == content_version(corpus.fingerprint, folder))


def test_racing_queries_and_qrels_uploads_never_leave_inconsistent_files(server: Server) -> None:
    url = server.processes.base_url

    def put(corpus_id: str, path: str, body: bytes, barrier: threading.Barrier) -> int:
        with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
            barrier.wait()
            return client.put(f"/v1/corpora/{corpus_id}/{path}", content=body).status_code

    for _ in range(5):
        corpus_id = new_corpus(server.client, QUERIES_123, QRELS_12)
        barrier = threading.Barrier(2)
        with ThreadPoolExecutor(2) as pool:
            queries = pool.submit(put, corpus_id, "queries", QUERIES_12, barrier)
            qrels = pool.submit(put, corpus_id, "qrels/test", QRELS_3, barrier)
            statuses = sorted([queries.result(), qrels.result()])
        assert statuses in ([200, 422], [200, 409]), statuses
        assert consistent(server, corpus_id)


def test_a_delete_during_an_upload_leaves_no_file(server: Server) -> None:
    corpus_id = new_corpus(server.client, QUERIES_123, QRELS_12)
    folder = server.home / "corpora" / corpus_id

    def slow_body() -> Iterator[bytes]:
        for _ in range(10):
            yield QUERIES_12
            time.sleep(0.1)

    def upload() -> httpx.Response:
        with httpx.Client(base_url=server.processes.base_url, headers=AUTH, timeout=60) as client:
            return client.put(f"/v1/corpora/{corpus_id}/queries", content=slow_body())

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(upload)
        time.sleep(0.4)
        assert server.client.delete(f"/v1/corpora/{corpus_id}").status_code == 204
        response = pending.result()
    assert response.status_code == 404, response.text
    assert not folder.exists()
    assert not list((server.home / "uploads").glob("*.tmp"))


def test_a_corpus_with_a_queued_job_is_deleted_only_when_forced(server: Server) -> None:
    corpus_id = new_corpus(server.client, QUERIES_123, QRELS_12)
    job = server.client.post("/v1/jobs/evaluate", json={"corpus_id": corpus_id, "params": {}})
    job_id = job.json()["id"]
    refused = server.client.delete(f"/v1/corpora/{corpus_id}")
    assert refused.status_code == 409 and job_id in refused.text, refused.text
    assert server.client.get(f"/v1/corpora/{corpus_id}").status_code == 200
    forced = server.client.delete(f"/v1/corpora/{corpus_id}", params={"force": True})
    assert forced.status_code == 204, forced.text
    assert server.client.get(f"/v1/jobs/{job_id}").json()["state"] == "cancelled"
    assert not (server.home / "corpora" / corpus_id).exists()


def test_a_write_interrupted_mid_swap_is_rolled_back_at_api_start(server: Server) -> None:
    corpus_id = new_corpus(server.client, QUERIES_123, QRELS_12)
    target = server.home / "corpora" / corpus_id / "queries.jsonl"
    # what an API killed between moving the new file in and updating the record leaves
    backup = target.with_name(f".queries.jsonl.{uuid.uuid4().hex}.old.tmp")
    os.link(target, backup)
    incoming = target.with_name("incoming")
    incoming.write_bytes(QUERIES_12)
    incoming.replace(target)
    restarted = Processes(server.processes.env, server.processes.logs / "restart")
    try:
        restarted.serve()
    finally:
        restarted.stop_all()
    assert target.read_bytes() == QUERIES_123 and not backup.exists()
    assert consistent(server, corpus_id)


# ---- a queued job pins the content it was submitted for (runs last: it starts a worker) ------


def test_a_queued_job_reads_the_content_it_was_submitted_for(server: Server) -> None:
    client = server.client
    corpus_id = new_corpus(client, QUERIES_123, QRELS_12)  # 2 judged queries
    body = {"corpus_id": corpus_id, "params": {"top_k": 5}}
    old = client.post("/v1/jobs/evaluate", json=body).json()
    assert (server.home / "snapshots" / old["id"]).is_dir()
    three = qrels_tsv([("q1", "d2", 1), ("q2", "d3", 1), ("q3", "d4", 1)])
    assert client.put(f"/v1/corpora/{corpus_id}/qrels/test", content=three).status_code == 200
    new = client.post("/v1/jobs/evaluate", json=body)
    assert new.status_code == 202 and new.json()["id"] != old["id"], new.text  # new qrels: new job
    server.processes.worker()
    wait_for(lambda: client.get("/readyz").status_code == 200, 90, "a ready worker")

    def finished(job_id: str) -> dict[str, object] | None:
        record = client.get(f"/v1/jobs/{job_id}").json()
        return record if record["state"] in ("succeeded", "failed") else None

    first = wait_for(lambda: finished(old["id"]), 120, "the first job")
    second = wait_for(lambda: finished(new.json()["id"]), 120, "the second job")
    assert first["state"] == "succeeded" and second["state"] == "succeeded", (first, second)  # type: ignore[index]
    assert first["stats"]["num_queries"] == 2  # type: ignore[index]  # the qrels it was sent for
    assert second["stats"]["num_queries"] == 3  # type: ignore[index]
    assert not (server.home / "snapshots" / old["id"]).exists()  # dropped once it ended
