"""The OpenAI-compatible client against a scripted loopback server: payload, key, retries,
backoff, timeouts, garbage, concurrency."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest

from hardneg.miners.llm.client import ChatMessage, LLMError, LLMRequest, SamplingParams
from hardneg.miners.llm.openai_client import (
    OpenAIClient,
    OpenAIConfig,
    backoff_delay,
    parse_chat_response,
)
from tests.test_llm_fakes import FakeOpenAI, Reply, Responder, fake_openai, free_port, user_text

MESSAGES = (ChatMessage("system", "be brief"), ChatMessage("user", "say hi"))
PARAMS = SamplingParams(max_tokens=5, temperature=0.3, top_p=0.9, seed=7, stop=("\n",))
SECRET = "sk-test-4f1d9c-never-print-me"


def config(url: str, **overrides: object) -> OpenAIConfig:
    values: dict[str, object] = {
        "base_url": url,
        "model": "tiny",
        "api_key_env": "HARDNEG_TEST_LLM_KEY",
        "backoff_s": 0.01,
        "max_backoff_s": 0.05,
        "max_retries": 2,
        "timeout_s": 5.0,
    }
    return OpenAIConfig(**(values | overrides))  # type: ignore[arg-type]


@contextmanager
def serving(
    script: Sequence[Reply] | Responder, **overrides: object
) -> Iterator[tuple[FakeOpenAI, OpenAIClient]]:
    with fake_openai(script) as server, OpenAIClient(config(server.url, **overrides)) as client:
        yield server, client


def test_sends_an_openai_chat_request_with_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDNEG_TEST_LLM_KEY", SECRET)
    with serving([Reply(content="hi there")]) as (server, client):
        assert client.complete(MESSAGES, PARAMS) == "hi there"
    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert request.payload == {
        "model": "tiny",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "say hi"},
        ],
        "max_tokens": 5,
        "temperature": 0.3,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["\n"],
    }


def test_no_key_variable_means_no_authorization_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARDNEG_TEST_LLM_KEY", raising=False)
    with serving([Reply()]) as (server, client):
        client.complete(MESSAGES, PARAMS)
    assert "Authorization" not in server.requests[0].headers


def test_5xx_are_retried_until_success() -> None:
    script = [Reply(500, raw=b"boom"), Reply(503, raw=b"busy"), Reply(content="finally")]
    with serving(script) as (server, client):
        assert client.complete(MESSAGES, PARAMS) == "finally"
    assert len(server.requests) == 3


def test_retry_after_of_a_429_is_honoured() -> None:
    script = [Reply(429, raw=b"slow down", headers={"Retry-After": "0.4"}), Reply(content="ok")]
    with serving(script, max_backoff_s=1.0) as (server, client):
        assert client.complete(MESSAGES, PARAMS) == "ok"
    first, second = server.requests
    assert second.at - first.at >= 0.4


def test_gives_up_after_the_last_retry_with_a_clear_error() -> None:
    script = [Reply(502, raw=b"bad gateway")]
    with serving(script, max_retries=3) as (server, client), pytest.raises(LLMError) as error:
        client.complete(MESSAGES, PARAMS)
    assert len(server.requests) == 4
    message = str(error.value)
    assert "gave up after 4 attempts" in message
    assert "HTTP 502" in message and "bad gateway" in message
    assert "/v1/chat/completions" in message and "tiny" in message


def test_a_slow_server_times_out_and_is_retried() -> None:
    with serving([Reply(content="late", delay_s=1.5)], timeout_s=0.2, max_retries=1) as (
        server,
        client,
    ):
        started = time.monotonic()
        with pytest.raises(LLMError, match="timed out"):
            client.complete(MESSAGES, PARAMS)
        elapsed = time.monotonic() - started
    assert len(server.requests) == 2
    assert elapsed < 1.4  # did not wait for the slow answer


def test_timeout_then_recovery() -> None:
    script = [Reply(content="late", delay_s=1.0), Reply(content="quick")]
    with serving(script, timeout_s=0.2) as (server, client):
        assert client.complete(MESSAGES, PARAMS) == "quick"
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    "raw",
    [b"<html>502 from a proxy</html>", b'{"object": "error"}', b'{"choices": []}', b"[1, 2]"],
)
def test_garbage_bodies_are_retried_then_reported(raw: bytes) -> None:
    with (
        serving([Reply(raw=raw)], max_retries=1) as (server, client),
        pytest.raises(LLMError, match="malformed response"),
    ):
        client.complete(MESSAGES, PARAMS)
    assert len(server.requests) == 2


def test_garbage_then_a_good_answer() -> None:
    with serving([Reply(raw=b"not json"), Reply(content="fine")]) as (server, client):
        assert client.complete(MESSAGES, PARAMS) == "fine"
    assert len(server.requests) == 2


def test_client_errors_are_not_retried() -> None:
    script = [Reply(400, raw=b'{"error": "unknown model"}')]
    with (
        serving(script, max_retries=4) as (server, client),
        pytest.raises(LLMError, match=r"HTTP 400.*unknown model"),
    ):
        client.complete(MESSAGES, PARAMS)
    assert len(server.requests) == 1


def test_connection_refused_is_retried_then_reported() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with (
        OpenAIClient(config(url, max_retries=2)) as client,
        pytest.raises(LLMError, match=r"gave up after 3 attempts.*connection error"),
    ):
        client.complete(MESSAGES, PARAMS)


def test_the_key_is_never_logged_or_shown(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HARDNEG_TEST_LLM_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    script = [Reply(500, raw=b"err"), Reply(401, raw=b"bad key")]
    with serving(script) as (server, client):
        with pytest.raises(LLMError) as error:
            client.complete(MESSAGES, PARAMS)
        shown = f"{client!r} {client.fingerprint} {client.config!r}"
    assert server.requests[0].headers["Authorization"].endswith(SECRET)  # it was sent
    assert SECRET not in caplog.text
    assert SECRET not in str(error.value)
    assert SECRET not in shown


def test_complete_many_keeps_order_limits_concurrency_and_isolates_failures() -> None:
    def responder(payload: dict[str, object]) -> Reply:
        text = user_text(payload)
        if text == "fail":
            return Reply(400, raw=b"rejected")
        return Reply(content=text.upper(), delay_s=0.15)

    texts = ["a", "b", "fail", "c", "d", "e", "f", "g"]
    requests = [LLMRequest((ChatMessage("user", t),), PARAMS) for t in texts]
    calls: list[tuple[int, int, str]] = []
    with serving(responder, concurrency=3) as (server, client):
        results = client.complete_many(requests, lambda d, t, s: calls.append((d, t, s)))
    assert [r if isinstance(r, str) else "ERROR" for r in results] == [
        "A",
        "B",
        "ERROR",
        "C",
        "D",
        "E",
        "F",
        "G",
    ]
    assert isinstance(results[2], LLMError) and "HTTP 400" in str(results[2])
    assert server.max_in_flight == 3  # parallel, but never more than the limit
    assert calls[0] == (0, 8, "llm: generating") and calls[-1] == (8, 8, "llm: generating")


def test_backoff_is_capped_exponential_with_jitter() -> None:
    rng = random.Random(0)
    for attempt in range(1, 12):
        delays = [backoff_delay(attempt, 0.5, 8.0, rng) for _ in range(200)]
        ceiling = min(8.0, 0.5 * 2 ** (attempt - 1))
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.8 * ceiling  # the whole window is used (jitter)


def test_parse_chat_response() -> None:
    body = {"choices": [{"message": {"role": "assistant", "content": "x"}}]}
    assert parse_chat_response(body) == "x"
    assert parse_chat_response({"choices": [{"message": {"content": None}}]}) == ""
    for bad in ({}, {"choices": "x"}, {"choices": [{"text": "x"}]}, [], "x"):
        with pytest.raises(ValueError):
            parse_chat_response(bad)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="base_url"):
        OpenAIConfig(base_url="localhost:8000")
    with pytest.raises(ValueError, match="concurrency"):
        OpenAIConfig(concurrency=0)
