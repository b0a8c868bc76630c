"""The REST API in-process (FastAPI TestClient over httpx) against a real Redis, no worker.

The many small validation cases live here; tests/test_service_e2e.py runs real processes.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hardneg.core.beir import find_corpus_file, load_corpus
from hardneg.service.api.app import create_app
from hardneg.service.jobs.runner import run_attempt
from hardneg.service.jobs.services import Services
from hardneg.service.jobs.worker import Maintenance
from hardneg.service.settings import Settings
from tests.conftest import TINY_DOCS, TINY_QUERIES, write_beir
from tests.test_service_support import API_KEY, REDIS_URL, jsonl, purge, qrels_tsv, unique_prefix

MAX_UPLOAD = 16 * 1024
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    prefix = unique_prefix()
    (tmp_path / "allowed").mkdir()
    yield Settings(
        home=tmp_path / "home",
        redis_url=REDIS_URL,
        redis_prefix=prefix,
        api_keys=[API_KEY],
        allowed_roots=[tmp_path / "allowed"],
        max_upload_bytes=MAX_UPLOAD,
        job_max_attempts=2,
    )
    purge(prefix)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), headers=AUTH) as test_client:
        yield test_client


def upload_tiny(client: TestClient, with_qrels: bool = True) -> dict[str, object]:
    response = client.post("/v1/corpora?name=tiny", content=gzip.compress(jsonl(TINY_DOCS)))
    assert response.status_code == 201, response.text
    corpus = response.json()
    if with_qrels:
        assert client.put(
            f"/v1/corpora/{corpus['id']}/queries", content=jsonl(TINY_QUERIES)
        ).is_success
        response = client.put(f"/v1/corpora/{corpus['id']}/qrels/test", content=qrels_tsv())
        assert response.status_code == 200, response.text
        corpus = response.json()
    return dict(corpus)


def stored_files(settings: Settings) -> list[Path]:
    return [p for p in settings.home.rglob("*") if p.is_file()]


# ---- security ----------------------------------------------------------------------------------


def test_health_is_open_and_every_other_route_needs_the_key(settings: Settings) -> None:
    with TestClient(create_app(settings)) as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        wrong = {"Authorization": "Bearer not-" + API_KEY}
        for path in ("/v1/corpora", "/v1/jobs", "/metrics", "/v1/jobs/j00"):
            missing = anonymous.get(path)
            assert missing.status_code == 401, path
            assert missing.headers["www-authenticate"] == "Bearer"
            refused = anonymous.get(path, headers=wrong)
            assert refused.status_code == 401
            assert API_KEY not in refused.text and "not-" not in refused.text
        assert anonymous.post("/v1/jobs/evaluate", json={"params": {}}).status_code == 401
        assert anonymous.get("/v1/corpora", headers=AUTH).status_code == 200


def test_api_without_configured_keys_is_open(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"api_keys": []}))) as open_client:
        assert open_client.get("/v1/corpora").status_code == 200


# ---- corpora -----------------------------------------------------------------------------------


def test_upload_gzip_corpus_then_detail_list_and_delete(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    corpus = upload_tiny(client, with_qrels=False)
    expected = load_corpus(find_corpus_file(write_beir(tmp_path / "ref")))
    assert corpus["documents"] == 5 and corpus["fingerprint"] == expected.fingerprint
    assert corpus["state"] == "ready" and corpus["source"] == "upload"
    detail = client.get(f"/v1/corpora/{corpus['id']}").json()
    assert detail == corpus
    listing = client.get("/v1/corpora").json()
    assert listing["total"] == 1 and listing["items"][0]["id"] == corpus["id"]
    folder = settings.home / "corpora" / str(corpus["id"])
    assert (folder / "corpus.jsonl.gz").is_file()
    assert client.delete(f"/v1/corpora/{corpus['id']}").status_code == 204
    assert client.get(f"/v1/corpora/{corpus['id']}").status_code == 404
    assert not folder.exists()
    assert client.delete(f"/v1/corpora/{corpus['id']}").status_code == 404


@pytest.mark.parametrize(
    ("body", "line", "reason"),
    [
        (
            b'{"_id": "a", "text": "x"}\n{"_id": "b", "text": "y"}\n{"_id": "c", "text": \n',
            3,
            "malformed JSON",
        ),
        (b'{"_id": "a", "text": "x"}\n{"text": "no id"}\n', 2, "missing '_id'"),
        (b'{"_id": "a", "text": "x"}\n{"_id": "a", "text": "again"}\n', 2, "duplicate '_id'"),
        (b'{"_id": "a", "text": 5}\n', 1, "'text' must be a string"),
        (b"[1, 2]\n", 1, "expected a JSON object"),
    ],
)
def test_bad_corpus_line_is_named_and_nothing_is_stored(
    client: TestClient, settings: Settings, body: bytes, line: int, reason: str
) -> None:
    for payload in (body, gzip.compress(body)):
        response = client.post("/v1/corpora?name=bad", content=payload)
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert detail["line"] == line and reason in detail["message"] and detail["field"] == "body"
        assert str(settings.home) not in response.text  # no server paths in errors
    assert client.get("/v1/corpora").json()["total"] == 0
    assert stored_files(settings) == []


def test_empty_and_broken_gzip_uploads_are_refused(client: TestClient, settings: Settings) -> None:
    assert client.post("/v1/corpora?name=x", content=b"").status_code == 422
    broken = gzip.compress(jsonl(TINY_DOCS))[:-12]
    response = client.post("/v1/corpora?name=x", content=broken)
    assert response.status_code == 422, response.text
    assert client.post("/v1/corpora?name=../x", content=jsonl(TINY_DOCS)).status_code == 422
    assert stored_files(settings) == []


def test_upload_over_the_limit_is_413_whether_declared_or_streamed(
    client: TestClient, settings: Settings
) -> None:
    big = jsonl([{"_id": f"d{i}", "text": "word " * 40} for i in range(200)])
    assert len(big) > MAX_UPLOAD
    declared = client.post("/v1/corpora?name=big", content=big)
    assert declared.status_code == 413 and declared.json()["detail"]["field"] == "body"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while streaming
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    streamed = client.post("/v1/corpora?name=big", content=chunks())
    assert streamed.status_code == 413
    assert client.get("/v1/corpora").json()["total"] == 0
    assert stored_files(settings) == []


def test_queries_and_qrels_are_checked_against_the_corpus(client: TestClient) -> None:
    corpus = upload_tiny(client, with_qrels=False)
    base = f"/v1/corpora/{corpus['id']}"
    early = client.put(f"{base}/qrels/test", content=qrels_tsv())
    assert early.status_code == 422 and "queries" in early.json()["detail"]["message"]
    bad_queries = client.put(f"{base}/queries", content=b'{"_id": "q1", "text": ""}\n')
    assert bad_queries.status_code == 422 and bad_queries.json()["detail"]["line"] == 1
    assert client.put(f"{base}/queries", content=jsonl(TINY_QUERIES)).json()["queries"] == 3
    unknown_doc = client.put(f"{base}/qrels/test", content=qrels_tsv([("q1", "d99", 1)]))
    assert unknown_doc.status_code == 422 and "d99" in unknown_doc.json()["detail"]["message"]
    bad_score = b"query-id\tcorpus-id\tscore\nq1\td2\t1\nq2\td3\thigh\n"
    response = client.put(f"{base}/qrels/test", content=bad_score)
    assert response.status_code == 422 and response.json()["detail"]["line"] == 3
    assert client.put(f"{base}/qrels/nope", content=qrels_tsv()).status_code == 422
    done = client.put(f"{base}/qrels/test", content=qrels_tsv()).json()
    assert done["splits"] == {"test": 3} and done["version"] != corpus["version"]


def test_register_path_is_confined_to_the_allowed_roots(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    allowed = settings.allowed_roots[0]
    inside = write_beir(allowed / "tiny")
    outside = write_beir(tmp_path / "outside")
    (allowed / "escape").symlink_to(outside, target_is_directory=True)
    for path in (
        str(outside),
        f"{allowed}/../outside",
        str(allowed / "escape"),
        "tiny",
        "/etc",
        f"{allowed}/tiny/../../outside",
    ):
        response = client.post("/v1/corpora/path", json={"path": path})
        assert response.status_code == 403, (path, response.text)
        assert response.json()["detail"]["field"] == "path"
    assert client.post("/v1/corpora/path", json={"path": f"{allowed}/none"}).status_code == 422
    first = client.post("/v1/corpora/path", json={"path": str(inside)})
    assert first.status_code == 202, first.text
    assert first.json()["state"] == "pending" and first.json()["job_id"]
    again = client.post("/v1/corpora/path", json={"path": f"{allowed}/./tiny"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    job = client.get(f"/v1/jobs/{first.json()['job_id']}").json()
    assert job["kind"] == "corpus" and job["state"] == "queued"
    ro = client.put(f"/v1/corpora/{first.json()['id']}/queries", content=jsonl(TINY_QUERIES))
    assert ro.status_code == 409


def test_register_beir_validates_the_name(client: TestClient) -> None:
    for bad in ("../etc", "Sci Fact", "scifact/..", "", "a" * 80):
        response = client.post("/v1/corpora/beir", json={"name": bad})
        assert response.status_code == 422, bad
    assert client.post("/v1/corpora/beir", json={"name": "x", "md5": "zz"}).status_code == 422
    first = client.post("/v1/corpora/beir", json={"name": "scifact"})
    assert first.status_code == 202
    again = client.post("/v1/corpora/beir", json={"name": "scifact"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]


# ---- jobs --------------------------------------------------------------------------------------


def test_job_requests_are_validated_field_by_field(client: TestClient) -> None:
    corpus_id = upload_tiny(client)["id"]
    submit = "/v1/jobs/evaluate"
    missing = client.post(submit, json={"params": {}})
    assert missing.status_code == 422 and missing.json()["detail"]["field"] == "corpus_id"
    unknown = client.post(submit, json={"corpus_id": "c404", "params": {}})
    assert unknown.status_code == 404
    for params, field in (
        ({"k3": 1}, "k3"),
        ({"b": 2}, "b"),
        ({"retriever": "tfidf"}, "retriever"),
    ):
        response = client.post(submit, json={"corpus_id": corpus_id, "params": params})
        assert response.status_code == 422
        assert field in response.json()["detail"][0]["loc"], response.text
    for model in ("../../etc/passwd", "/etc/passwd", "job:j" + "0" * 32):
        params = {"retriever": "dense", "model": model}
        response = client.post(submit, json={"corpus_id": corpus_id, "params": params})
        assert response.status_code == 422 and response.json()["detail"]["field"] == "params.model"
    assert client.post("/v1/jobs/nosuchkind", json={"params": {}}).status_code in (404, 405)
    assert client.get("/v1/jobs/j404").status_code == 404
    assert client.post("/v1/jobs/j404/cancel").status_code == 404
    assert client.get("/v1/jobs/j404/results").status_code == 404


def test_identical_requests_share_one_job_force_makes_a_new_one(client: TestClient) -> None:
    corpus_id = upload_tiny(client)["id"]
    body = {"corpus_id": corpus_id, "params": {"k1": 1.2}}
    first = client.post("/v1/jobs/evaluate", json=body)
    assert first.status_code == 202 and not first.json()["deduplicated"]
    same = client.post(
        "/v1/jobs/evaluate", json={"corpus_id": corpus_id, "params": {"k1": 1.2, "b": 0.75}}
    )
    assert same.status_code == 200 and same.json()["id"] == first.json()["id"]
    assert same.json()["deduplicated"]
    other = client.post("/v1/jobs/evaluate", json={"corpus_id": corpus_id, "params": {"k1": 0.9}})
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]
    forced = client.post("/v1/jobs/evaluate", json=body | {"force": True})
    assert forced.status_code == 202 and forced.json()["id"] != first.json()["id"]
    assert client.get("/v1/jobs").json()["total"] == 3


def test_idempotency_key_replays_the_first_response(client: TestClient) -> None:
    corpus_id = upload_tiny(client)["id"]
    body = {"corpus_id": corpus_id, "params": {}, "force": True}
    headers = {"Idempotency-Key": "retry-me"}
    first = client.post("/v1/jobs/evaluate", json=body, headers=headers)
    replay = client.post("/v1/jobs/evaluate", json=body, headers=headers)
    assert replay.json()["id"] == first.json()["id"]  # force would otherwise make a new job
    changed = client.post("/v1/jobs/evaluate", json=body | {"params": {"b": 0.5}}, headers=headers)
    assert changed.status_code == 422 and changed.json()["detail"]["field"] == "Idempotency-Key"
    upload = gzip.compress(jsonl(TINY_DOCS))
    one = client.post("/v1/corpora?name=t", content=upload, headers=headers)
    two = client.post("/v1/corpora?name=t", content=upload, headers=headers)
    assert one.status_code == 201 and two.json()["id"] == one.json()["id"]
    assert client.get("/v1/corpora").json()["total"] == 2  # upload_tiny's and this one


def test_cancelled_queued_job_never_runs(client: TestClient, settings: Settings) -> None:
    corpus_id = upload_tiny(client)["id"]
    job = client.post("/v1/jobs/evaluate", json={"corpus_id": corpus_id, "params": {}}).json()
    cancelled = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["state"] == "cancelled"
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 409
    services = Services.connect(settings)
    try:  # what a worker does when RQ hands it this job: nothing
        assert run_attempt(services, job["id"], 1) == "skipped"
    finally:
        services.close()
    assert client.get(f"/v1/jobs/{job['id']}").json()["state"] == "cancelled"
    assert client.get(f"/v1/jobs/{job['id']}/results").status_code == 409
    resubmitted = client.post("/v1/jobs/evaluate", json={"corpus_id": corpus_id, "params": {}})
    assert resubmitted.status_code == 202 and resubmitted.json()["id"] != job["id"]


# ---- health and metrics ------------------------------------------------------------------------


def test_readyz_needs_a_live_worker(client: TestClient, settings: Settings) -> None:
    not_ready = client.get("/readyz", headers={})
    assert not_ready.status_code == 503 and not_ready.json() == {
        "redis": True,
        "workers": 0,
        "ready": False,
    }
    heartbeat = Maintenance(settings, f"{settings.redis_prefix}.test.{os.getpid()}")
    heartbeat.beat()
    try:
        assert client.get("/readyz").json() == {"redis": True, "workers": 1, "ready": True}
    finally:
        heartbeat.stop()  # also removes the worker from the live set
    assert client.get("/readyz").status_code == 503


def test_readyz_reports_an_unreachable_redis(settings: Settings) -> None:
    gone = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(gone)) as test_client:
        response = test_client.get("/readyz")
        assert response.status_code == 503 and response.json()["redis"] is False


def test_metrics_in_prometheus_text_format(client: TestClient) -> None:
    corpus_id = upload_tiny(client)["id"]
    job_id = client.post("/v1/jobs/evaluate", json={"corpus_id": corpus_id, "params": {}}).json()[
        "id"
    ]
    client.get(f"/v1/jobs/{job_id}")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'hardneg_jobs{state="queued"} 1.0' in text
    assert 'hardneg_jobs{state="running"} 0.0' in text
    assert "hardneg_workers_alive 0.0" in text
    assert (
        'route="/v1/jobs/{job_id}"' in text
        and "hardneg_http_request_duration_seconds_bucket" in text
    )
    assert job_id not in text  # the route template, not the raw path, labels latency


def test_jobs_list_filters_and_finished_jobs_can_be_deleted(client: TestClient) -> None:
    corpus_id = upload_tiny(client)["id"]
    ids = [
        client.post(
            "/v1/jobs/evaluate", json={"corpus_id": corpus_id, "params": {"k1": k1}}
        ).json()["id"]
        for k1 in (0.5, 0.6, 0.7)
    ]
    page = client.get("/v1/jobs", params={"kind": "evaluate", "limit": 2}).json()
    assert page["total"] == 3 and [j["id"] for j in page["items"]] == ids[::-1][:2]
    assert client.get("/v1/jobs", params={"kind": "corpus"}).json()["total"] == 0
    assert client.get("/v1/jobs", params={"state": "bogus"}).status_code == 422
    assert client.delete(f"/v1/jobs/{ids[0]}").status_code == 409  # still queued
    client.post(f"/v1/jobs/{ids[0]}/cancel")
    assert client.get("/v1/jobs", params={"state": "cancelled"}).json()["total"] == 1
    assert client.delete(f"/v1/jobs/{ids[0]}").status_code == 204
    assert client.get(f"/v1/jobs/{ids[0]}").status_code == 404
    assert client.get("/v1/jobs").json()["total"] == 2
