"""Concurrency: many clients and jobs at once on real processes, each result checked.

- 20 identical mining requests at once: one job, one computation, 20 identical correct answers;
- two mining jobs with different parameters on one corpus, on two workers at once: the candidate
  lists they share are computed once, and both outputs are whole and equal solo runs';
- writers racing on one workspace artifact (an index folder): every write lands whole and a
  reader never finds the folder missing or half-deleted (``hardneg.core.atomic``);
- the Redis cache's single flight: a second process waits for the value being computed instead
  of computing it again, and a dead owner's claim does not block anyone for long.
"""

from __future__ import annotations

import gzip
import io
import json
import multiprocessing
import tarfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from hardneg.core.atomic import atomic_path
from hardneg.core.cache import cache_key
from hardneg.miners.spec import MineSpec
from hardneg.service.cache import RedisCache
from hardneg.service.jobs.services import Services
from hardneg.service.pipelines.context import PipelineContext
from hardneg.service.pipelines.mine import run_mining
from hardneg.service.settings import Settings
from tests.test_reliability_faults import upload_beir, upload_scifact_slice
from tests.test_service_pipelines import scifact_slice
from tests.test_service_support import (
    AUTH,
    REDIS_URL,
    Stack,
    corpus_files_left,
    purge,
    running_stack,
    unique_prefix,
    wait_for,
)

CLIENTS = 20


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("concurrency")) as built:
        yield built


@pytest.fixture(scope="module")
def scifact_id(stack: Stack, scifact_dir: Path) -> str:
    return upload_scifact_slice(stack, scifact_dir, "scifact-slice")


def at_once(stack: Stack, count: int, call: Any) -> list[Any]:
    """``call(client)`` from ``count`` threads released together, each with its own client."""
    barrier = threading.Barrier(count)

    def one(_: int) -> Any:
        with httpx.Client(base_url=stack.processes.base_url, headers=AUTH, timeout=60) as client:
            barrier.wait()
            return call(client)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def cache_counts(stack: Stack) -> tuple[float, float]:
    labels = '{namespace="candidates"}'
    return (
        stack.metric("hardneg_cache_misses_total", labels),
        stack.metric("hardneg_cache_hits_total", labels),
    )


def solo_rows(stack: Stack, corpus_id: str, params: dict[str, Any], home: Path) -> list[Any]:
    """The mined rows of the same request computed in this process, from nothing."""
    spec = MineSpec.model_validate(params)
    data = str(stack.home / "corpora" / corpus_id)
    result = run_mining(spec, data, PipelineContext(Settings(home=home), home / "out"))
    lines = result.files["mined"].read_text().splitlines()
    return [json.loads(line) for line in lines]


def job_rows(client: httpx.Client, job_id: str) -> list[Any]:
    page = client.get(f"/v1/jobs/{job_id}/results", params={"limit": 500})
    assert page.status_code == 200, page.text
    return list(page.json()["items"])


def test_twenty_identical_mining_requests_make_one_job_and_twenty_equal_answers(
    stack: Stack, scifact_id: str, tmp_path: Path
) -> None:
    params = {"method": "bm25", "split": "train", "num_negatives": 3, "seed": 11}
    body = {"corpus_id": scifact_id, "params": params}
    misses, hits = cache_counts(stack)
    mine_jobs = stack.client.get("/v1/jobs", params={"kind": "mine"}).json()["total"]

    answers = at_once(stack, CLIENTS, lambda c: c.post("/v1/jobs/mine", json=body))
    assert sorted(a.status_code for a in answers) == [200] * (CLIENTS - 1) + [202]
    (job_id,) = {a.json()["id"] for a in answers}
    assert sum(a.json().get("deduplicated") is True for a in answers) == CLIENTS - 1
    job = stack.wait_job(job_id, {"succeeded", "failed"}, timeout=180)
    assert job["state"] == "succeeded", job

    pages = at_once(stack, CLIENTS, lambda c: job_rows(c, job_id))
    assert all(page == pages[0] for page in pages) and pages[0]
    assert stack.client.get("/v1/jobs", params={"kind": "mine"}).json()["total"] == mine_jobs + 1
    assert cache_counts(stack) == (misses + 1, hits)  # the candidates were computed once
    assert pages[0] == solo_rows(stack, scifact_id, params, tmp_path)


def variant_of_scifact(stack: Stack, scifact_dir: Path) -> str:
    """The slice plus one document: a corpus of its own, so nothing is built or cached yet."""
    corpus, queries, qrels = scifact_slice(scifact_dir)
    extra = json.dumps({"_id": "extra-doc", "title": "", "text": "one more document"}) + "\n"
    more = gzip.compress(gzip.decompress(corpus) + extra.encode())
    return upload_beir(stack, "scifact-variant", more, queries, qrels)


def test_two_jobs_on_one_corpus_at_once_compute_once_and_both_outputs_are_whole(
    stack: Stack, scifact_dir: Path, tmp_path: Path
) -> None:
    second = stack.processes.worker()
    wait_for(lambda: stack.client.get("/readyz").json()["workers"] >= 2, 90, "two workers")
    corpus_id = variant_of_scifact(stack, scifact_dir)
    variants = [
        {"method": "bm25", "split": "train", "num_negatives": 2},
        {"method": "bm25", "split": "train", "num_negatives": 4, "sampling": "random", "seed": 3},
    ]
    misses, hits = cache_counts(stack)
    submitted = [
        stack.client.post("/v1/jobs/mine", json={"corpus_id": corpus_id, "params": p})
        for p in variants
    ]
    assert [s.status_code for s in submitted] == [202, 202], [s.text for s in submitted]
    jobs = [stack.wait_job(s.json()["id"], {"succeeded", "failed"}, 180) for s in submitted]
    assert [j["state"] for j in jobs] == ["succeeded", "succeeded"], jobs
    first, other = jobs
    assert first["started_at"] < other["finished_at"] and other["started_at"] < first["finished_at"]
    assert cache_counts(stack) == (misses + 1, hits + 1)  # one computed, the other waited for it

    for job, params in zip(jobs, variants, strict=True):
        rows = job_rows(stack.client, job["id"])
        assert rows == solo_rows(stack, corpus_id, params, tmp_path / job["id"])
        files = {
            n: stack.client.get(f"/v1/jobs/{job['id']}/artifacts/{n}") for n in job["artifacts"]
        }
        assert all(r.status_code == 200 for r in files.values())
        assert pq.read_table(io.BytesIO(files["triplet.parquet"].content)).num_rows > 0
        mined = [json.loads(line) for line in files["mined.jsonl"].text.splitlines()]
        assert mined == rows
        with tarfile.open(fileobj=io.BytesIO(files["mined.tar.gz"].content)) as tar:
            assert "mined/mined.jsonl" in tar.getnames()
    indexes = list((stack.home / "indexes" / "bm25").iterdir())
    assert len([p for p in indexes if not p.name.startswith(".")]) == len(indexes)
    assert corpus_files_left(stack.home) == []
    second.terminate()
    second.wait(timeout=30)


# ---- writers racing on one workspace artifact ------------------------------------------------

FILES, FILE_BYTES = 6, 32_768


def write_folder_repeatedly(target: Path, rounds: int, tag: str, report: Any) -> None:
    problems = []
    for round_number in range(rounds):
        try:
            with atomic_path(target) as temp:
                temp.mkdir()
                for index in range(FILES):
                    (temp / f"part{index}.bin").write_bytes(tag.encode() * (FILE_BYTES // 4))
                (temp / "done.json").write_text(json.dumps({"round": round_number, "tag": tag}))
        except Exception as exc:
            problems.append(f"writer {tag}: {type(exc).__name__}: {exc}")
    report.put((0, problems[:5], len(problems)))  # one message: the queue never backs up


def read_folder_until(target: Path, stop: Any, report: Any) -> None:
    """Every look at the folder (once it first exists) must find it whole."""
    looks, problems, count = 0, [], 0
    while not stop.is_set():
        names = [f"part{i}.bin" for i in range(FILES)] + ["done.json"]
        if not target.exists():
            found = ["the folder was missing"] if looks else []
        else:
            looks += 1
            found = []
            for name in names:
                try:
                    size = (target / name).stat().st_size
                except FileNotFoundError:
                    found.append(f"{name} was missing")
                    continue
                if name != "done.json" and size != FILE_BYTES:
                    found.append(f"{name} had {size} bytes")
        count += len(found)
        problems.extend(found[: max(0, 5 - len(problems))])
    report.put((looks, problems, count))


def test_racing_writers_of_one_artifact_folder_never_leave_it_missing_or_partial(
    tmp_path: Path,
) -> None:
    target = tmp_path / "indexes" / "bm25" / "corpus-params"
    context = multiprocessing.get_context("fork")
    report, stop = context.Queue(), context.Event()
    reader = context.Process(target=read_folder_until, args=(target, stop, report))
    writers = [
        context.Process(target=write_folder_repeatedly, args=(target, 150, tag, report))
        for tag in ("AAAA", "BBBB", "CCCC")
    ]
    reader.start()
    for writer in writers:
        writer.start()
    outcomes = [report.get(timeout=120) for _ in writers]
    stop.set()
    outcomes.append(report.get(timeout=30))
    for process in [*writers, reader]:
        process.join(timeout=30)
    looks = max(outcome[0] for outcome in outcomes)
    problems = [p for outcome in outcomes for p in outcome[1]]
    assert sum(outcome[2] for outcome in outcomes) == 0, problems
    assert looks > 100  # the reader really watched the writes
    tags = {(target / f"part{i}.bin").read_bytes()[:4] for i in range(FILES)}
    assert len(tags) == 1  # one writer's folder, whole
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no temp left


# ---- the cache's single flight -----------------------------------------------------------------


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    prefix = unique_prefix()
    settings = Settings(home=tmp_path, redis_url=REDIS_URL, redis_prefix=prefix)
    built = Services.connect(settings)
    yield built
    built.close()
    purge(prefix)


def process_cache(services: Services, claim_seconds: float) -> RedisCache:
    """The cache as another process sees it (its own claims)."""
    return RedisCache(services.raw, services.raw, services.keys.namespace, 60, claim_seconds)


def test_a_value_being_computed_is_waited_for_not_computed_again(services: Services) -> None:
    owner, other = process_cache(services, 1.0), process_cache(services, 1.0)
    key = cache_key("candidates", {"corpus": "c1", "depth": 32})
    assert owner.get(key) is None and owner.holding()  # a miss: ours to compute
    got: dict[str, bytes | None] = {}
    waiter = threading.Thread(target=lambda: got.update(value=other.get(key)))
    waiter.start()
    for _ in range(4):  # computing for longer than the claim's TTL: renewals keep it
        time.sleep(0.4)
        owner.renew_claims()
    assert waiter.is_alive()
    owner.set(key, b"candidates")
    waiter.join(timeout=5)
    assert got == {"value": b"candidates"} and not owner.holding()
    assert owner.counters() == {"candidates": (1, 1)}


def test_a_dead_owner_claim_expires_and_the_waiter_computes(services: Services) -> None:
    dead, other = process_cache(services, 0.5), process_cache(services, 0.5)
    key = cache_key("candidates", {"corpus": "c2", "depth": 32})
    assert dead.get(key) is None  # claims it, then never renews nor sets (killed)
    started = time.monotonic()
    assert other.get(key) is None and other.holding()  # waited for the claim to lapse
    assert 0.3 < time.monotonic() - started < 5
    other.release_claims()
    assert not other.holding()
    assert process_cache(services, 0.5).get(key) is None  # released: nobody waits
