"""Hostile input, round two: a real ``hardneg serve`` on real Redis, every refusal named and
nothing stored.

- compression: gzip bombs sent as a corpus and as queries are refused by the ratio or the
  decompressed-size limit (named), after at most a few MiB, with the API's peak memory barely
  moving;
- values that break parsers or the OS: enormous integers and deep nesting in JSONL lines (422
  naming the line); paths that are too long or name an unknown ``~user`` (4xx naming the field);
- risks: a symlink out of an allowed root, hub model ids, unlisted BEIR names and a caller's md5,
  train's ``eval_split``, two Authorization headers; security headers on every response;
- connections: 500 idle sockets do not stop ``/healthz`` and are closed after the header
  timeout; a body trickled at 1 byte/s is cut off with 408.

One table (:data:`CASES`) serves this test and ``bench/reliability.py --only round_two``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import TINY_DOCS, write_beir
from tests.test_reliability_input import GOOD, Context, Hostile, prepare, send, stored_state
from tests.test_service_support import (
    API_KEY,
    AUTH,
    Processes,
    jsonl,
    purge,
    service_env,
    unique_prefix,
)

MIB = 1024 * 1024
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 3.0
MAX_DECOMPRESSED = 64 * MIB
RATIO_FLOOR = 1 * MIB
SECOND_KEY = "second-key-" + uuid.uuid4().hex  # another client of the same server
SERVER_ENV = {
    "HARDNEG_API_KEYS": f"{API_KEY},{SECOND_KEY}",
    "HARDNEG_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
    "HARDNEG_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
    "HARDNEG_MAX_DECOMPRESSED_BYTES": str(MAX_DECOMPRESSED),
    "HARDNEG_COMPRESSION_RATIO_FLOOR_BYTES": str(RATIO_FLOOR),
}
IDLE_SOCKETS = 500


def gzip_bomb(decompressed: int, unit: bytes = b"\0") -> bytes:
    """A gzip of ``decompressed`` bytes of ``unit`` (about 1000x smaller), built a MiB at a
    time."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = unit * (MIB // len(unit))
    parts = [packer.compress(block) for _ in range(decompressed // MIB)]
    return b"".join([*parts, packer.flush()])


def incompressible_gzip(decompressed: int) -> bytes:
    """Hex text (ratio ~2): passes the ratio check, so only the size limit can stop it."""
    text = b'{"_id": "x", "text": "' + os.urandom(decompressed // 2).hex().encode() + b'"}\n'
    return _gzip(text)


def _gzip(data: bytes) -> bytes:
    packer = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


HUGE_INT = b'{"_id": "b", "text": "x", "n": ' + b"7" * 5000 + b"}\n"
DEEP = b'{"_id": "b", "text": "x", "n": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
CORPORA = "/v1/corpora?name=round-two"
QUERIES = "/v1/corpora/{corpus}/queries"
TRAIN_PARAMS = {"negatives_job": "j" + "0" * 32, "eval_split": "../../etc"}


def _evaluate(**params: object) -> dict[str, object]:
    return {"json": {"corpus_id": "{corpus}", "params": {"retriever": "dense", **params}}}


def _path(path: str) -> dict[str, object]:
    return {"json": {"path": path}}


CASES: list[Hostile] = [
    # compression
    Hostile(
        "gzip_bomb_corpus_600mib",
        "POST",
        CORPORA,
        413,
        "max_compression_ratio",
        lambda: gzip_bomb(600 * MIB),
    ),
    Hostile(
        "gzip_bomb_queries_1gib",
        "PUT",
        QUERIES,
        413,
        "max_compression_ratio",
        lambda: gzip_bomb(1024 * MIB),
    ),
    Hostile(
        "gzip_past_decompressed_limit",
        "PUT",
        QUERIES,
        413,
        "max_decompressed_bytes",
        lambda: incompressible_gzip(MAX_DECOMPRESSED + 4 * MIB),
    ),
    Hostile("gzip_truncated_queries", "PUT", QUERIES, 422, "gzip", lambda: _gzip(GOOD)[:-6]),
    # values that break parsers
    Hostile("huge_integer_corpus", "POST", CORPORA, 422, '"line":2', lambda: GOOD + HUGE_INT),
    Hostile("huge_integer_queries", "PUT", QUERIES, 422, "digits", lambda: HUGE_INT),
    Hostile("deep_nesting_corpus", "POST", CORPORA, 422, '"line":2', lambda: GOOD + DEEP),
    Hostile("deep_nesting_gzip", "POST", CORPORA, 422, "nested", lambda: _gzip(GOOD + DEEP)),
    # paths the OS refuses
    Hostile(
        "register_path_too_long",
        "POST",
        "/v1/corpora/path",
        422,
        '"field":"path"',
        **_path("{allowed}/" + "a" * 300),
    ),
    Hostile(
        "register_path_deep",
        "POST",
        "/v1/corpora/path",
        422,
        '"field":"path"',
        **_path("{allowed}/" + "a/" * 3000),
    ),
    Hostile(
        "register_path_unknown_user",
        "POST",
        "/v1/corpora/path",
        422,
        "~user",
        **_path("~nosuchuser-hardneg/x"),
    ),
    Hostile(
        "model_path_too_long",
        "POST",
        "/v1/jobs/evaluate",
        422,
        "params.model",
        **_evaluate(model="{allowed}/" + "m" * 300),
    ),
    Hostile(
        "model_unknown_user",
        "POST",
        "/v1/jobs/evaluate",
        422,
        "params.model",
        **_evaluate(model="~nosuchuser-hardneg/model"),
    ),
    # risks
    Hostile(
        "symlink_out_of_root",
        "POST",
        "/v1/corpora/path",
        403,
        "link to outside",
        **_path("{allowed}/linked"),
    ),
    Hostile(
        "hub_model_id",
        "POST",
        "/v1/jobs/evaluate",
        422,
        "ALLOW_HUB_MODELS",
        **_evaluate(model="someone/huge-model"),
    ),
    Hostile(
        "unlisted_beir_name",
        "POST",
        "/v1/corpora/beir",
        422,
        "published checksum",
        json={"name": "made-up-dataset"},
    ),
    Hostile(
        "beir_md5_override",
        "POST",
        "/v1/corpora/beir",
        422,
        '"field":"md5"',
        json={"name": "scifact", "md5": "0" * 32},
    ),
    Hostile(
        "train_eval_split_traversal",
        "POST",
        "/v1/jobs/train",
        422,
        "eval_split",
        json={"corpus_id": "{corpus}", "params": TRAIN_PARAMS},
    ),
]


@dataclass
class Server:
    processes: Processes
    client: httpx.Client
    home: Path
    context: Context

    @property
    def api_pid(self) -> int:
        return self.processes.started[0].pid


def prepare_links(allowed: Path, outside: Path) -> None:
    """``allowed/linked``: a BEIR folder whose corpus file is a symlink to a file outside."""
    write_beir(outside / "secret")
    linked = allowed / "linked"
    write_beir(linked)
    (linked / "corpus.jsonl").unlink()
    (linked / "corpus.jsonl").symlink_to(outside / "secret" / "corpus.jsonl")


@contextlib.contextmanager
def round_two_server(root: Path, **extra: str) -> Iterator[Server]:
    """``hardneg serve`` with short connection deadlines, a prepared corpus and queued job."""
    prefix = unique_prefix()
    allowed, outside = root / "allowed", root / "outside"
    allowed.mkdir(parents=True, exist_ok=True)
    prepare_links(allowed, outside)
    env = service_env(
        prefix,
        root / "home",
        HARDNEG_ALLOWED_ROOTS=str(allowed),
        HARDNEG_BEIR_BASE_URL="http://127.0.0.1:9",
        **SERVER_ENV,
        **extra,
    )
    processes = Processes(env, root / "logs")
    try:
        processes.serve()
        with httpx.Client(base_url=processes.base_url, headers=AUTH, timeout=120) as client:
            context = prepare(client, allowed)
            yield Server(processes, client, root / "home", context)
    finally:
        processes.stop_all()
        purge(prefix)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def two_authorization_headers(server: Server) -> httpx.Response:
    key = AUTH["Authorization"]
    headers = [("Authorization", key), ("Authorization", "Bearer someone-else")]
    return httpx.get(f"{server.processes.base_url}/v1/corpora", headers=headers, timeout=30)


def hold_idle_sockets(server: Server, count: int) -> dict[str, object]:
    """Open ``count`` sockets that never send a byte; time /healthz meanwhile; then check the
    server closed them after its header timeout."""
    url = server.processes.base_url
    port = int(url.rsplit(":", 1)[1])
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
    try:
        time.sleep(0.5)  # all accepted
        started = time.perf_counter()
        health = httpx.get(f"{url}/healthz", timeout=10)
        healthz_ms = round((time.perf_counter() - started) * 1000, 1)
        time.sleep(HEADER_TIMEOUT + 2.0)
        closed = 0
        for sock in sockets:
            sock.settimeout(5)
            try:
                closed += sock.recv(1) == b""
            except ConnectionResetError:
                closed += 1
            except TimeoutError:
                pass  # still open
    finally:
        for sock in sockets:
            sock.close()
    return {
        "held": count,
        "healthz_ok": health.status_code == 200,
        "healthz_ms": healthz_ms,
        "closed_by_server": closed,
        "header_timeout_seconds": HEADER_TIMEOUT,
    }


def trickle_body(server: Server, seconds_cap: float = 20.0) -> dict[str, object]:
    """POST a corpus declared as 1000 bytes, sending one byte a second; the server must answer
    408 and close within its body timeout (plus a second of slack)."""
    url = server.processes.base_url
    port = int(url.rsplit(":", 1)[1])
    head = (
        f"POST {CORPORA} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: {AUTH['Authorization']}\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    answer = b""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=seconds_cap) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        body = b'{"_id": "slow", "text": "' + b"a" * 960
        for byte in body:
            if time.perf_counter() - started > seconds_cap:
                break
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError, BlockingIOError):
                break
            deadline = time.perf_counter() + 1.0
            while time.perf_counter() < deadline:
                try:
                    chunk = sock.recv(65536)
                except BlockingIOError:
                    time.sleep(0.05)
                    continue
                except ConnectionResetError:
                    chunk = b""
                answer += chunk
                if not chunk:
                    break
            if answer and (b"\r\n\r\n" in answer):
                break
    elapsed = time.perf_counter() - started
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else None
    return {
        "status": status,
        "cut_off_after_seconds": round(elapsed, 1),
        "body_timeout_seconds": BODY_TIMEOUT,
        "rate_bytes_per_second": 1,
    }


def run_case(server: Server, case: Hostile) -> dict[str, object]:
    before = stored_state(server.client, server.home, server.context.corpus)
    response = send(server.client, case, server.context)
    return {
        "name": case.name,
        "status": response.status_code,
        "expected": case.status,
        "names_the_problem": case.names in response.text,
        "nothing_stored": stored_state(server.client, server.home, server.context.corpus) == before,
        "message": response.text[:200],
    }


# ---- the tests -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with round_two_server(tmp_path_factory.mktemp("round-two")) as built:
        yield built


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_round_two_case_is_refused_by_name_and_nothing_is_stored(
    server: Server, case: Hostile
) -> None:
    peak = peak_rss_mib(server.api_pid)
    outcome = run_case(server, case)
    assert outcome["status"] == case.status, outcome
    assert outcome["names_the_problem"], outcome
    assert outcome["nothing_stored"], outcome
    # a bomb is refused while it streams: the API's peak memory barely moves
    assert peak_rss_mib(server.api_pid) - peak < 64, (peak, peak_rss_mib(server.api_pid))


def test_a_gzip_queries_upload_within_the_limits_is_stored_decompressed(server: Server) -> None:
    created = server.client.post("/v1/corpora?name=gz-ok", content=jsonl(TINY_DOCS))
    corpus_id = created.json()["id"]
    queries = jsonl([{"_id": "q1", "text": "wolves"}, {"_id": "q2", "text": "sugar"}])
    stored = server.client.put(f"/v1/corpora/{corpus_id}/queries", content=_gzip(queries))
    assert stored.status_code == 200, stored.text
    assert stored.json()["queries"] == 2
    folder = server.home / "corpora" / corpus_id
    assert (folder / "queries.jsonl").read_bytes() == queries


def test_two_authorization_headers_are_refused(server: Server) -> None:
    response = two_authorization_headers(server)
    assert response.status_code == 401, response.text
    assert server.client.get("/v1/corpora").status_code == 200


def test_every_response_carries_security_headers(server: Server) -> None:
    for path in ("/healthz", "/v1/corpora", "/login", "/nope"):
        response = server.client.get(path)
        assert response.headers["x-frame-options"] == "DENY", path
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"], path


def test_500_idle_sockets_do_not_stop_healthz_and_are_closed(server: Server) -> None:
    figures = hold_idle_sockets(server, IDLE_SOCKETS)
    assert figures["healthz_ok"], figures
    assert figures["closed_by_server"] == IDLE_SOCKETS, figures


def test_a_body_trickled_at_one_byte_a_second_is_cut_off(server: Server) -> None:
    before = stored_state(server.client, server.home, server.context.corpus)
    figures = trickle_body(server)
    assert figures["status"] == 408, figures
    assert float(figures["cut_off_after_seconds"]) < BODY_TIMEOUT + 3, figures  # type: ignore[arg-type]
    assert stored_state(server.client, server.home, server.context.corpus) == before


def test_sign_in_needs_the_forms_csrf_token_and_cookies_are_secure_behind_https(
    server: Server,
) -> None:
    base = server.processes.base_url
    key = AUTH["Authorization"].removeprefix("Bearer ")
    form = {"content-type": "application/x-www-form-urlencoded"}
    forged = httpx.post(f"{base}/login", content=f"key={key}", headers=form)
    assert forged.status_code == 403 and "hardneg_key" not in forged.cookies
    # behind a TLS-terminating proxy on loopback (a trusted proxy by default)
    https = form | {"x-forwarded-proto": "https"}
    shown = httpx.get(f"{base}/login", headers={"x-forwarded-proto": "https"})
    csrf = shown.cookies["hardneg_csrf"]
    assert f'value="{csrf}"' in shown.text and "secure" in shown.headers["set-cookie"].lower()
    # the browser sends the Secure cookie back over HTTPS (httpx would not, over http://)
    https["cookie"] = f"hardneg_csrf={csrf}"
    signed = httpx.post(f"{base}/login", content=f"key={key}&csrf={csrf}", headers=https)
    assert signed.status_code == 303, signed.text
    cookie = next(c for c in signed.headers.get_list("set-cookie") if "hardneg_key=" in c)
    assert "secure" in cookie.lower() and "httponly" in cookie.lower()
    plain = httpx.get(f"{base}/login").headers["set-cookie"].lower()
    assert "secure" not in plain  # plain HTTP: the cookie would never come back


def test_docs_load_swagger_from_this_server(server: Server) -> None:
    page = httpx.get(f"{server.processes.base_url}/docs")
    assert page.status_code == 200
    assert "/docs/assets/swagger-ui-bundle.js" in page.text and "cdn" not in page.text.lower()
    assert "'sha256-" in page.headers["content-security-policy"]
    bundle = httpx.get(f"{server.processes.base_url}/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and "SwaggerUIBundle" in bundle.text


def test_a_deduplicated_job_is_cancelled_only_when_every_submitter_cancels(server: Server) -> None:
    body = {"corpus_id": server.context.corpus, "params": {"top_k": 11}}
    second = {"Authorization": f"Bearer {SECOND_KEY}"}
    first = server.client.post("/v1/jobs/evaluate", json=body)
    assert first.status_code == 202, first.text
    job_id = first.json()["id"]
    shared = server.client.post("/v1/jobs/evaluate", json=body, headers=second)
    assert shared.status_code == 200 and shared.json()["id"] == job_id, shared.text
    withdrawn = server.client.post(f"/v1/jobs/{job_id}/cancel")
    assert withdrawn.status_code == 202 and withdrawn.json()["state"] == "queued", withdrawn.text
    assert server.client.get(f"/v1/jobs/{job_id}").json()["state"] == "queued"
    last = server.client.post(f"/v1/jobs/{job_id}/cancel", headers=second)
    assert last.status_code == 202 and last.json()["state"] == "cancelled", last.text
