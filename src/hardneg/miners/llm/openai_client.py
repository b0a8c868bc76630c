"""An ``LLMClient`` for any OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp, OpenAI).

Plain httpx, no SDK. Calls go to ``<base_url>/chat/completions``; at most ``concurrency`` are in
flight at once. Timeouts, connection errors, HTTP 408/429/5xx and malformed bodies are retried
with capped exponential backoff and full jitter (Brooker, "Exponential Backoff And Jitter", AWS
Architecture Blog, 2015); a ``Retry-After`` header is honoured up to the cap. Other 4xx answers
fail at once. The API key is read from an environment variable, sent as a bearer token, and
never logged or put in an error message.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import httpx

from hardneg.core.progress import Progress, no_progress
from hardneg.miners.llm.client import ChatMessage, LLMError, LLMRequest, SamplingParams

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_BODY_SNIPPET = 300


@dataclass(frozen=True)
class OpenAIConfig:
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "default"
    api_key_env: str | None = "OPENAI_API_KEY"  # name of the variable, never the key itself
    concurrency: int = 4
    timeout_s: float = 120.0  # read/write/pool timeout of one attempt
    connect_timeout_s: float = 10.0
    max_retries: int = 4  # attempts = max_retries + 1
    backoff_s: float = 1.0  # first retry waits up to this long; doubles each retry
    max_backoff_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if self.concurrency <= 0 or self.max_retries < 0:
            raise ValueError("concurrency must be positive and max_retries >= 0")
        if min(self.timeout_s, self.connect_timeout_s) <= 0 or self.backoff_s < 0:
            raise ValueError("timeouts must be positive and backoff_s >= 0")


class _RetryableError(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full jitter: uniform in ``[0, min(cap, base * 2**(attempt - 1))]`` for attempt >= 1."""
    return rng.uniform(0.0, min(cap, base * 2 ** (attempt - 1)))


def _retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def parse_chat_response(body: object) -> str:
    """The text of the first choice; ValueError when the body is not a chat completion."""
    if not isinstance(body, dict):
        raise ValueError("body is not a JSON object")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("no 'choices' list in the body")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise ValueError("choices[0] has no 'message' object")
    content = message.get("content")
    if content is None:
        return ""  # e.g. a refusal or a tool call: the parsers count it as empty
    if not isinstance(content, str):
        raise ValueError("choices[0].message.content is not a string")
    return content


class OpenAIClient:
    """Thread-safe; use as a context manager (or call ``close``) to release connections."""

    def __init__(self, config: OpenAIConfig) -> None:
        self.config = config
        self._base_url = config.base_url.rstrip("/")
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(config.api_key_env, "") if config.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(
            base_url=self._base_url,
            headers=headers,
            timeout=httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s),
            limits=httpx.Limits(max_connections=config.concurrency),
        )
        self._slots = threading.BoundedSemaphore(config.concurrency)
        self._rng = random.Random()
        self._rng_lock = threading.Lock()

    @property
    def fingerprint(self) -> str:
        return f"openai:{self._base_url}:{self.config.model}"

    def __repr__(self) -> str:
        return f"OpenAIClient({self._base_url!r}, model={self.config.model!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OpenAIClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def payload(self, messages: Sequence[ChatMessage], params: SamplingParams) -> dict[str, object]:
        body: dict[str, object] = {
            "model": self.config.model,
            "messages": [m.to_json() for m in messages],
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        return body

    def complete(self, messages: Sequence[ChatMessage], params: SamplingParams) -> str:
        payload = self.payload(messages, params)
        attempts = self.config.max_retries + 1
        last: _RetryableError | None = None
        for attempt in range(attempts):
            if last is not None:
                self._sleep_before_retry(attempt, last)
            try:
                return self._attempt(payload)
            except _RetryableError as exc:
                last = exc
                logger.warning(
                    "%s: attempt %d/%d failed: %s", self._base_url, attempt + 1, attempts, exc
                )
        raise LLMError(
            f"{self._base_url}/chat/completions (model {self.config.model!r}): gave up after "
            f"{attempts} attempts; last error: {last}"
        )

    def _sleep_before_retry(self, attempt: int, failure: _RetryableError) -> None:
        with self._rng_lock:
            delay = backoff_delay(
                attempt, self.config.backoff_s, self.config.max_backoff_s, self._rng
            )
        if failure.retry_after is not None:
            delay = min(max(delay, failure.retry_after), self.config.max_backoff_s)
        logger.debug("retrying in %.2fs after: %s", delay, failure)
        time.sleep(delay)

    def _attempt(self, payload: Mapping[str, object]) -> str:
        with self._slots:
            try:
                response = self._http.post("/chat/completions", json=payload)
            except httpx.TimeoutException as exc:
                raise _RetryableError(f"timed out ({type(exc).__name__})") from None
            except httpx.TransportError as exc:
                raise _RetryableError(f"connection error ({type(exc).__name__}: {exc})") from None
        status = response.status_code
        if status in RETRYABLE_STATUS:
            raise _RetryableError(
                f"HTTP {status}: {response.text[:_BODY_SNIPPET]!r}",
                _retry_after_seconds(response.headers),
            )
        if status >= 400:
            raise LLMError(
                f"{self._base_url}/chat/completions (model {self.config.model!r}): HTTP {status}: "
                f"{response.text[:_BODY_SNIPPET]!r}"
            )
        try:
            return parse_chat_response(response.json())
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            raise _RetryableError(
                f"malformed response ({exc}): {response.text[:_BODY_SNIPPET]!r}"
            ) from None

    def complete_many(
        self, requests: Sequence[LLMRequest], progress: Progress = no_progress
    ) -> list[str | LLMError]:
        """Run ``requests`` with up to ``concurrency`` in flight; results keep request order."""
        stage = "llm: generating"
        results: list[str | LLMError] = [LLMError("not run")] * len(requests)
        progress(0, len(requests), stage)
        executor = ThreadPoolExecutor(max_workers=self.config.concurrency)
        try:
            futures: dict[Future[str], int] = {
                executor.submit(self.complete, r.messages, r.params): i
                for i, r in enumerate(requests)
            }
            for done, future in enumerate(as_completed(futures), start=1):
                try:
                    results[futures[future]] = future.result()
                except LLMError as exc:
                    results[futures[future]] = exc
                progress(done, len(requests), stage)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
        return results
