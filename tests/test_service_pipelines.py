"""The product's flows over REST, on real processes: mine negatives, generate queries, train.

The corpus is a small slice of SciFact (the judged documents of 40 train and 20 test queries
plus 40 others, texts cut to 200 characters) so every job stays in seconds on a CPU.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from hardneg.core.beir import find_corpus_file, iter_corpus, load_qrels, load_queries
from hardneg.core.negatives import MinedQuery
from tests.conftest import TINY_DOCS, TINY_QUERIES
from tests.test_service_support import Stack, jsonl, qrels_tsv, running_stack, wait_for

TRAIN_QUERIES, TEST_QUERIES, OTHER_DOCS, TEXT_CHARS = 40, 20, 40, 200


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    fast_recovery = {
        "HARDNEG_JOB_LEASE_SECONDS": "2",
        "HARDNEG_REAP_INTERVAL_SECONDS": "0.5",
        "HARDNEG_WORKER_HEARTBEAT_SECONDS": "0.5",
    }
    with running_stack(tmp_path_factory.mktemp("pipelines"), **fast_recovery) as built:
        yield built


def scifact_slice(folder: Path) -> tuple[bytes, bytes, dict[str, bytes]]:
    """(corpus.jsonl.gz, queries.jsonl, {split: qrels tsv}) of a small, consistent slice."""
    qrels = {s: load_qrels(folder / "qrels" / f"{s}.tsv") for s in ("train", "test")}
    chosen = {
        "train": dict(sorted(qrels["train"].items())[:TRAIN_QUERIES]),
        "test": dict(sorted(qrels["test"].items())[:TEST_QUERIES]),
    }
    judged = {doc for split in chosen.values() for docs in split.values() for doc in docs}
    docs, others = [], 0
    for doc in iter_corpus(find_corpus_file(folder)):
        keep = doc.id in judged or others < OTHER_DOCS
        others += doc.id not in judged and keep
        if keep:
            docs.append({"_id": doc.id, "title": doc.title, "text": doc.text[:TEXT_CHARS]})
    queries = load_queries(folder / "queries.jsonl")
    wanted = [q for split in chosen.values() for q in split]
    rows = [{"_id": q, "text": queries[q]} for q in wanted]
    tsv = {
        split: qrels_tsv(
            [(q, d, g) for q, judged_docs in pairs.items() for d, g in judged_docs.items()]
        )
        for split, pairs in chosen.items()
    }
    return gzip.compress(jsonl(docs)), jsonl(rows), tsv


@pytest.fixture(scope="module")
def scifact_id(stack: Stack, scifact_dir: Path) -> str:
    corpus, queries, qrels = scifact_slice(scifact_dir)
    created = stack.client.post("/v1/corpora?name=scifact-slice", content=corpus)
    assert created.status_code == 201, created.text
    corpus_id = str(created.json()["id"])
    assert stack.client.put(f"/v1/corpora/{corpus_id}/queries", content=queries).is_success
    for split, tsv in qrels.items():
        response = stack.client.put(f"/v1/corpora/{corpus_id}/qrels/{split}", content=tsv)
        assert response.status_code == 200, response.text
    assert response.json()["splits"] == {"train": TRAIN_QUERIES, "test": TEST_QUERIES}
    return corpus_id


def mine(stack: Stack, corpus_id: str, timeout: float = 180, **params: Any) -> dict[str, Any]:
    body = {"corpus_id": corpus_id, "params": {"method": "bm25", "split": "train"} | params}
    submitted = stack.client.post("/v1/jobs/mine", json=body)
    assert submitted.status_code in (200, 202), submitted.text  # 200: an identical job exists
    return stack.wait_job(submitted.json()["id"], {"succeeded", "failed"}, timeout=timeout)


def test_bm25_mining_job_results_downloads_and_cached_candidates(
    stack: Stack, scifact_id: str
) -> None:
    job = mine(stack, scifact_id, num_negatives=3)
    assert job["state"] == "succeeded", job
    page = stack.client.get(f"/v1/jobs/{job['id']}/results", params={"limit": 100}).json()
    assert 0 < page["total"] <= TRAIN_QUERIES
    rows = [MinedQuery.from_json(item) for item in page["items"]]  # the core contract
    assert all(r.method == "bm25" and r.negative_ids and r.positive_ids for r in rows)
    assert all(not set(r.negative_ids) & set(r.positive_ids) for r in rows)
    files = job["artifacts"]
    assert {"mined.jsonl", "triplet.parquet", "ntuple.jsonl", "mined.tar.gz"} <= set(files)
    triplets = stack.client.get(f"/v1/jobs/{job['id']}/artifacts/triplet.parquet").content
    assert pq.read_table(io.BytesIO(triplets)).column_names[:3] == [
        "anchor",
        "positive",
        "negative",
    ]
    mined = stack.client.get(f"/v1/jobs/{job['id']}/artifacts/mined.jsonl").text.splitlines()
    assert [json.loads(line)["query_id"] for line in mined] == [r.query_id for r in rows]

    misses = stack.metric("hardneg_cache_misses_total", '{namespace="candidates"}')
    hits = stack.metric("hardneg_cache_hits_total", '{namespace="candidates"}')
    assert misses >= 1
    # other filters on the same corpus and retriever: a new job, but the candidates are cached
    fewer = mine(stack, scifact_id, num_negatives=2)
    assert fewer["state"] == "succeeded" and fewer["id"] != job["id"]
    assert stack.metric("hardneg_cache_hits_total", '{namespace="candidates"}') == hits + 1
    assert stack.metric("hardneg_cache_misses_total", '{namespace="candidates"}') == misses
    again = stack.client.post(
        "/v1/jobs/mine",
        json={"corpus_id": scifact_id, "params": {"method": "bm25", "num_negatives": 3}},
    )
    assert again.status_code == 200 and again.json()["id"] == job["id"]  # identical: shared


def test_a_dense_job_in_two_processes_mines_what_one_process_does(
    stack: Stack, scifact_id: str
) -> None:
    """``processes: 2`` runs the job under torchrun (2 gloo ranks, ``core.sharded``) in the
    worker; its negatives are a one-process job's (the second job reuses the stored corpus
    embeddings, whose sharded encoding tests/test_sharded.py compares)."""
    params = {"method": "dense", "split": "test", "num_negatives": 3, "cache": False}
    one = mine(stack, scifact_id, timeout=600, **params)
    two = mine(stack, scifact_id, timeout=600, **params, processes=2)  # 3 model loads: slow
    assert one["state"] == two["state"] == "succeeded", (one, two)
    assert two["id"] != one["id"] and two["params"]["processes"] == 2
    assert "processes" in two["stats"]["seconds"]  # the launcher's wall time

    def mined(job: dict[str, Any]) -> list[MinedQuery]:
        text = stack.client.get(f"/v1/jobs/{job['id']}/artifacts/mined.jsonl").text
        return [MinedQuery.from_json(json.loads(line)) for line in text.splitlines()]

    rows_one, rows_two = mined(one), mined(two)
    assert len(rows_one) == TEST_QUERIES
    assert [(r.query_id, r.negative_ids) for r in rows_two] == [
        (r.query_id, r.negative_ids) for r in rows_one
    ]
    for a, b in zip(rows_two, rows_one, strict=True):
        assert a.negative_scores == pytest.approx(b.negative_scores, abs=2e-5)
    assert two["stats"]["negatives"] == one["stats"]["negatives"]


def rank_processes(home: Path) -> list[int]:
    """Pids of this stack's torchrun launcher and ranks (``hardneg.service.distributed``)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if b"hardneg.service.distributed" not in (proc / "cmdline").read_bytes():
                continue
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:  # not a process, or gone
            continue
        if f"HARDNEG_HOME={home}".encode() in environ:
            found.append(int(proc.name))
    return found


def test_cancelling_a_job_in_two_processes_stops_its_ranks(stack: Stack, scifact_id: str) -> None:
    params = {"method": "dense", "split": "test", "processes": 2, "corpus_prompt": "cancel: "}
    submitted = stack.client.post("/v1/jobs/mine", json={"corpus_id": scifact_id, "params": params})
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    wait_for(lambda: rank_processes(stack.home), 120, "the job's torchrun processes")
    assert stack.client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    assert stack.wait_job(job_id, {"cancelled", "failed", "succeeded"})["state"] == "cancelled"
    wait_for(lambda: not rank_processes(stack.home), 30, "the ranks to be gone")


def test_mining_params_are_checked_before_anything_runs(stack: Stack, scifact_id: str) -> None:
    bad = {"num_negatives": 3, "min_negatives": 5}  # FilterConfig refuses it
    response = stack.client.post("/v1/jobs/mine", json={"corpus_id": scifact_id, "params": bad})
    assert response.status_code == 422 and "min_negatives" in response.text
    outside = {"method": "cross-encoder", "cross_encoder": "/etc"}
    response = stack.client.post("/v1/jobs/mine", json={"corpus_id": scifact_id, "params": outside})
    assert (
        response.status_code == 422 and response.json()["detail"]["field"] == "params.cross_encoder"
    )


def test_generate_job_makes_a_new_corpus_with_queries(stack: Stack) -> None:
    """SmolLM2 in-process (llama.cpp) writes queries; a new corpus gets them as train qrels."""
    client = stack.client
    corpus = client.post("/v1/corpora?name=tiny", content=jsonl(TINY_DOCS)).json()
    assert client.put(f"/v1/corpora/{corpus['id']}/queries", content=jsonl(TINY_QUERIES)).is_success
    params = {"max_passages": 2, "per_passage": 1, "max_tokens": 24, "round_trip_k": 5}
    submitted = client.post("/v1/jobs/generate", json={"corpus_id": corpus["id"], "params": params})
    assert submitted.status_code == 202, submitted.text
    job = stack.wait_job(submitted.json()["id"], {"succeeded", "failed"}, timeout=240)
    assert job["state"] == "succeeded", job
    new = client.get(f"/v1/corpora/{job['stats']['corpus_id']}").json()
    assert new["source"] == "generated" and new["state"] == "ready"
    # SmolLM2-135M writes junk often: count what it was asked, not what survived the filters
    assert job["stats"]["report"]["total"] == 2 and job["stats"]["passages"] == 2
    assert new["documents"] == 5 and new["queries"] == job["stats"]["queries"]
    assert new["splits"] == {"train": new["queries"]}
    page = client.get(f"/v1/jobs/{job['id']}/results").json()
    assert page["total"] == new["queries"]
    assert all(row["text"] and row["metadata"]["source"] for row in page["items"])
    llm_misses = stack.metric("hardneg_cache_misses_total", '{namespace="llm"}')
    assert llm_misses >= 1  # LLM outputs went through the Redis cache
    rerun = client.post(
        "/v1/jobs/generate", json={"corpus_id": corpus["id"], "params": params, "force": True}
    ).json()
    assert stack.wait_job(rerun["id"], {"succeeded", "failed"}, timeout=240)["state"] == "succeeded"
    assert stack.metric("hardneg_cache_hits_total", '{namespace="llm"}') >= 1
    assert client.delete(f"/v1/corpora/{new['id']}").status_code == 204
    assert not (stack.home / "corpora" / new["id"]).exists()


@pytest.fixture(scope="module")
def mined_job(stack: Stack, scifact_id: str) -> str:
    job = mine(stack, scifact_id, num_negatives=3)  # shared with the mining test (same request)
    assert job["state"] == "succeeded", job
    return str(job["id"])


def train(stack: Stack, corpus_id: str, params: dict[str, Any]) -> str:
    response = stack.client.post("/v1/jobs/train", json={"corpus_id": corpus_id, "params": params})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_training_job_reports_metrics_and_ships_a_loadable_model(
    stack: Stack, scifact_id: str, mined_job: str, tmp_path: Path
) -> None:
    from sentence_transformers import SentenceTransformer

    from hardneg.core.encoders import load_encoder, model_fingerprint

    config = {"max_steps": 2, "per_device_batch_size": 4, "max_doc_length": 64, "logging_steps": 1}
    job_id = train(
        stack, scifact_id, {"trainer": "star", "negatives_job": mined_job, "config": config}
    )
    stages: set[str] = set()
    while (record := stack.job(job_id))["state"] in ("queued", "running"):
        stages.add(record["stage"])
        time.sleep(0.2)
    assert record["state"] == "succeeded", (record, stack.processes.log_text())
    assert "training star" in stages
    stats = record["stats"]
    assert stats["steps"] == 2 and stats["eval_split"] == "test"
    assert set(stats["metrics_before"]) >= {"ndcg@10", "recall@100"}
    assert 0 < stats["metrics_after"]["ndcg@10"] <= 1
    history = stack.client.get(f"/v1/jobs/{job_id}/results").json()
    assert any(row.get("phase") == "after" for row in history["items"])

    archive = stack.client.get(f"/v1/jobs/{job_id}/artifacts/model.tar.gz")
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        tar.extractall(tmp_path, filter="data")
    model = SentenceTransformer(str(tmp_path / "model"), device="cpu")
    assert model.encode(["a query", "a passage"]).shape == (2, 384)
    assert model_fingerprint(model) != model_fingerprint(load_encoder(device="cpu"))  # trained

    # the trained model is usable by later jobs as job:<id>
    body = {"corpus_id": scifact_id, "params": {"retriever": "dense", "model": f"job:{job_id}"}}
    evaluation = stack.client.post("/v1/jobs/evaluate", json=body)
    assert evaluation.status_code == 202, evaluation.text
    done = stack.wait_job(evaluation.json()["id"], {"succeeded", "failed"}, timeout=240)
    assert done["state"] == "succeeded", done
    assert done["stats"]["metrics"]["ndcg@10"] == pytest.approx(
        stats["metrics_after"]["ndcg@10"], abs=1e-4
    )
