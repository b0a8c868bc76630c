"""Hostile input: every case gets a 4xx whose body names the problem, and nothing is stored.

One table of cases (:data:`HOSTILE`) serves this test (the API in-process on a real Redis) and
``bench/reliability.py`` (a real ``hardneg serve``), which records each case's status. Before
and after each case the corpora and jobs lists, the seeded corpus's version and every file under
the data directory must be the same. Single validation cases of the upload checks live in
tests/test_service_api.py; this table is the attack surface as a whole.
"""

from __future__ import annotations

import gzip
import json
import random
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from hardneg.service.api.app import create_app
from hardneg.service.api.corpus_files import MAX_LINE_BYTES
from hardneg.service.api.limits import MAX_JSON_BODY_BYTES
from hardneg.service.settings import Settings
from tests.conftest import TINY_DOCS, TINY_QUERIES, write_beir
from tests.test_service_support import (
    API_KEY,
    AUTH,
    REDIS_URL,
    jsonl,
    purge,
    qrels_tsv,
    unique_prefix,
)

HUGE_LINE = 100_000_000  # bytes in one line: the "100 MB single line"
MAX_UPLOAD = HUGE_LINE + 10_000_000  # uploads may be that large; only the line is refused
GOOD = b'{"_id": "a", "text": "fine"}\n'


def huge_line() -> bytes:
    return b'{"_id": "big", "text": "' + b"a" * HUGE_LINE + b'"}\n'


def huge_hex_line() -> bytes:
    """The 100 MB line as hex digits: it gzips only ~2x, so the line-length check (not the
    compression-ratio limit, which a line of one repeated letter trips) refuses it."""
    text = random.Random(0).randbytes(HUGE_LINE // 2).hex().encode()
    return b'{"_id": "big", "text": "' + text + b'"}\n'


@dataclass(frozen=True)
class Hostile:
    name: str
    method: str
    path: str  # with {corpus}, {job} and {allowed} filled in from the Context
    status: int
    names: str  # the response body must contain this: the field, line or problem at fault
    content: Callable[[], bytes] | None = None
    json: object = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    corpus: str  # a ready uploaded corpus with queries and test qrels
    job: str  # a queued evaluation job on it
    allowed: str  # the server's allowed root for registering folders


def _raw(body: str) -> dict[str, object]:
    return {"content": lambda: body.encode(), "headers": {"Content-Type": "application/json"}}


def _evaluate(corpus: bool = True, **params: object) -> dict[str, object]:
    return {"json": {"corpus_id": "{corpus}" if corpus else None, "params": params}}


CORPORA = "/v1/corpora?name=hostile"
QUERIES = "/v1/corpora/{corpus}/queries"
QRELS = "/v1/corpora/{corpus}/qrels/test"
TOO_LONG = {"Content-Length": str(1 << 40)}  # declared: refused before a byte is read

HOSTILE: list[Hostile] = [
    # malformed files, named by line
    Hostile("malformed_jsonl", "POST", CORPORA, 422, '"line":2', lambda: GOOD + b'{"_id": "b"\n'),
    Hostile("not_an_object", "POST", CORPORA, 422, "expected a JSON object", lambda: b"[1]\n"),
    Hostile("invalid_utf8", "POST", CORPORA, 422, "UTF-8", lambda: GOOD + b'{"_id": "\xff"}\n'),
    Hostile(
        "invalid_utf8_gzip",
        "POST",
        CORPORA,
        422,
        '"line":2',
        lambda: gzip.compress(GOOD + b'{"_id": "b", "text": "\xc3\x28"}\n'),
    ),
    Hostile("line_100mb", "POST", CORPORA, 422, f"longer than {MAX_LINE_BYTES}", huge_line),
    Hostile(
        "line_100mb_gzip",
        "POST",
        CORPORA,
        422,
        f"longer than {MAX_LINE_BYTES}",
        lambda: gzip.compress(huge_hex_line(), compresslevel=1),
    ),
    Hostile("broken_gzip", "POST", CORPORA, 422, "gzip", lambda: gzip.compress(GOOD)[:-8]),
    Hostile("duplicate_doc_ids", "POST", CORPORA, 422, "duplicate '_id'", lambda: GOOD + GOOD),
    Hostile("empty_corpus", "POST", CORPORA, 422, "corpus is empty", lambda: b"\n  \n"),
    Hostile("empty_body", "POST", CORPORA, 422, "empty", lambda: b""),
    Hostile(
        "duplicate_query_ids",
        "PUT",
        QUERIES,
        422,
        "duplicate '_id'",
        lambda: jsonl([TINY_QUERIES[0], TINY_QUERIES[0]]),
    ),
    Hostile("invalid_utf8_queries", "PUT", QUERIES, 422, "UTF-8", lambda: b'{"_id": "\xfe"}\n'),
    Hostile(
        "qrels_unknown_doc",
        "PUT",
        QRELS,
        422,
        "d404",
        lambda: qrels_tsv([("q1", "d2", 1), ("q2", "d404", 1)]),
    ),
    Hostile(
        "qrels_unknown_query", "PUT", QRELS, 422, "q404", lambda: qrels_tsv([("q404", "d1", 1)])
    ),
    Hostile("qrels_bad_header", "PUT", QRELS, 422, "header", lambda: b"a\tb\nq1\td1\n"),
    # path traversal in names and paths
    Hostile("name_traversal", "POST", "/v1/corpora?name=../../etc", 422, "name", lambda: GOOD),
    Hostile("beir_name_traversal", "POST", "/v1/corpora/beir", 422, "name", json={"name": "../x"}),
    Hostile(
        "register_path_traversal",
        "POST",
        "/v1/corpora/path",
        403,
        "path",
        json={"path": "{allowed}/../../etc"},
    ),
    Hostile("corpus_id_traversal", "GET", "/v1/corpora/..%2F..%2Fetc%2Fpasswd", 404, "no route"),
    Hostile("split_traversal", "PUT", "/v1/corpora/{corpus}/qrels/..%2Fqueries", 404, "no route"),
    Hostile("artifact_traversal", "GET", "/v1/jobs/{job}/artifacts/%2E%2E", 404, "'..'"),
    Hostile(
        "model_traversal",
        "POST",
        "/v1/jobs/evaluate",
        422,
        "params.model",
        **_evaluate(retriever="dense", model="../../etc/passwd"),
    ),
    Hostile(
        "generated_name_traversal",
        "POST",
        "/v1/jobs/generate",
        422,
        "name",
        json={"corpus_id": "{corpus}", "params": {"name": "../x"}},
    ),
    # oversized bodies
    Hostile("oversized_upload", "POST", CORPORA, 413, "limit", lambda: GOOD, headers=TOO_LONG),
    Hostile("oversized_queries", "PUT", QUERIES, 413, "limit", lambda: GOOD, headers=TOO_LONG),
    Hostile(
        "oversized_json",
        "POST",
        "/v1/jobs/evaluate",
        413,
        "larger than",
        lambda: b" " * (MAX_JSON_BODY_BYTES + 1),
        headers={"Content-Type": "application/json"},
    ),
    # absurd parameters
    Hostile("k_1e9", "POST", "/v1/jobs/evaluate", 422, "top_k", **_evaluate(top_k=10**9)),
    Hostile("pool_1e9", "POST", "/v1/jobs/mine", 422, "pool_depth", **_evaluate(pool_depth=10**9)),
    Hostile(
        "round_trip_k_1e9",
        "POST",
        "/v1/jobs/generate",
        422,
        "round_trip_k",
        **_evaluate(round_trip_k=10**9),
    ),
    Hostile(
        "negative_count",
        "POST",
        "/v1/jobs/mine",
        422,
        "num_negatives",
        **_evaluate(num_negatives=-1),
    ),
    Hostile(
        "negative_per_passage",
        "POST",
        "/v1/jobs/generate",
        422,
        "per_passage",
        **_evaluate(per_passage=-3),
    ),
    Hostile("seed_1e30", "POST", "/v1/jobs/mine", 422, "params.seed", **_evaluate(seed=10**30)),
    Hostile(
        "infinity",
        "POST",
        "/v1/jobs/evaluate",
        422,
        "params.k1",
        **_raw('{"corpus_id": "{corpus}", "params": {"k1": Infinity}}'),
    ),
    Hostile(
        "nan",
        "POST",
        "/v1/jobs/evaluate",
        422,
        "k1",
        **_raw('{"corpus_id": "{corpus}", "params": {"k1": NaN}}'),
    ),
    Hostile("missing_corpus", "POST", "/v1/jobs/evaluate", 422, "corpus_id", **_evaluate(False)),
    Hostile("page_limit_1e9", "GET", "/v1/jobs?limit=1000000000", 422, "limit"),
    Hostile("negative_offset", "GET", "/v1/corpora?offset=-1", 422, "offset"),
    Hostile("offset_1e30", "GET", f"/v1/corpora?offset={10**30}", 422, "offset"),
    # bodies that are not JSON at all
    Hostile("malformed_json_body", "POST", "/v1/jobs/evaluate", 422, "JSON", **_raw('{"params": ')),
    Hostile(
        "invalid_utf8_json_body",
        "POST",
        "/v1/jobs/evaluate",
        400,
        "UTF-8",
        lambda: b'{"params": {"split": "\xff"}}',
        headers={"Content-Type": "application/json"},
    ),
]


def _fill(text: str, context: Context) -> str:
    return (
        text.replace("{corpus}", context.corpus)
        .replace("{job}", context.job)
        .replace("{allowed}", context.allowed)
    )


def send(client: httpx.Client, case: Hostile, context: Context) -> httpx.Response:
    content = case.content() if case.content is not None else None
    if content is not None and case.headers.get("Content-Type") == "application/json":
        content = _fill(content.decode(errors="surrogateescape"), context).encode(
            errors="surrogateescape"
        )
    body = json.loads(_fill(json.dumps(case.json), context)) if case.json is not None else None
    if content is not None and "Content-Length" in case.headers:
        return _declared(client, case.method, _fill(case.path, context), case.headers, content)
    return client.request(
        case.method, _fill(case.path, context), content=content, json=body, headers=case.headers
    )


def _declared(
    client: httpx.Client, method: str, path: str, headers: dict[str, str], content: bytes
) -> httpx.Response:
    """A request whose declared Content-Length is not what follows (HTTP clients refuse to send
    one): through the ASGI client as a stream, over the network on a raw socket."""
    if isinstance(client, TestClient):

        def stream() -> Iterator[bytes]:
            yield content

        return client.request(method, path, content=stream(), headers=headers)
    url = client.base_url
    lines = [f"{method} {path} HTTP/1.1", f"Host: {url.host}:{url.port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in {**client.headers, **headers}.items()]
    with socket.create_connection((url.host, url.port or 80), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + content)
        raw = b"".join(iter(lambda: sock.recv(65536), b""))
    head, _, payload = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    pairs = [tuple(line.split(": ", 1)) for line in header_lines if ": " in line]
    return httpx.Response(int(status_line.split()[1]), headers=pairs, content=payload)


def stored_state(client: httpx.Client, home: Path, corpus_id: str) -> dict[str, object]:
    """What a hostile request must leave unchanged."""
    corpus = client.get(f"/v1/corpora/{corpus_id}").json()
    return {
        "corpora": client.get("/v1/corpora").json()["total"],
        "jobs": client.get("/v1/jobs").json()["total"],
        "corpus": (corpus["version"], corpus["queries"], corpus["splits"]),
        "files": sorted(
            (str(p.relative_to(home)), p.stat().st_size) for p in home.rglob("*") if p.is_file()
        ),
    }


def prepare(client: httpx.Client, allowed: Path) -> Context:
    """The stored data the cases aim at: a ready corpus with queries and qrels, a queued job."""
    created = client.post("/v1/corpora?name=target", content=jsonl(TINY_DOCS))
    assert created.status_code == 201, created.text
    corpus_id = str(created.json()["id"])
    assert client.put(f"/v1/corpora/{corpus_id}/queries", content=jsonl(TINY_QUERIES)).is_success
    assert client.put(f"/v1/corpora/{corpus_id}/qrels/test", content=qrels_tsv()).is_success
    job = client.post("/v1/jobs/evaluate", json={"corpus_id": corpus_id, "params": {}})
    assert job.status_code == 202, job.text
    write_beir(allowed / "tiny")
    return Context(corpus_id, str(job.json()["id"]), str(allowed))


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Path, Context]]:
    root = tmp_path_factory.mktemp("hostile")
    (root / "allowed").mkdir()
    prefix = unique_prefix()
    settings = Settings(
        home=root / "home",
        redis_url=REDIS_URL,
        redis_prefix=prefix,
        api_keys=[API_KEY],
        allowed_roots=[root / "allowed"],
        max_upload_bytes=MAX_UPLOAD,
    )
    try:
        with TestClient(create_app(settings), headers=AUTH) as client:
            yield client, settings.home, prepare(client, root / "allowed")
    finally:
        purge(prefix)


@pytest.mark.parametrize("case", HOSTILE, ids=[case.name for case in HOSTILE])
def test_hostile_input_is_refused_by_name_and_nothing_is_stored(
    target: tuple[TestClient, Path, Context], case: Hostile
) -> None:
    client, home, context = target
    before = stored_state(client, home, context.corpus)
    response = send(client, case, context)
    assert response.status_code == case.status, response.text[:500]
    assert case.names in response.text, response.text[:500]
    assert response.headers["content-type"] == "application/json"
    assert str(home) not in response.text and API_KEY not in response.text
    assert stored_state(client, home, context.corpus) == before


def test_the_table_covers_every_kind_of_hostile_input() -> None:
    names = {case.name for case in HOSTILE}
    assert len(names) == len(HOSTILE)
    for required in (
        "malformed_jsonl",
        "invalid_utf8",
        "line_100mb",
        "duplicate_doc_ids",
        "qrels_unknown_doc",
        "empty_corpus",
        "name_traversal",
        "register_path_traversal",
        "oversized_upload",
        "k_1e9",
        "negative_count",
    ):
        assert required in names
