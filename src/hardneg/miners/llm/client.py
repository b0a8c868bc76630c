"""The one small interface every LLM backend implements.

A backend turns chat messages plus sampling parameters into text. ``complete`` makes one call and
raises :class:`LLMError` when it fails for good (after the backend's own retries);
``complete_many`` runs a batch (concurrently where the backend can) and returns one text or one
``LLMError`` per request, in request order, so one bad call does not lose a whole batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from hardneg.core.progress import Progress, no_progress

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str

    def to_json(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings; all of them are part of every cache key."""

    max_tokens: int = 64
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int | None = 0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_tokens <= 0:
            raise ValueError(f"max_tokens must be positive, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass(frozen=True)
class LLMRequest:
    messages: tuple[ChatMessage, ...]
    params: SamplingParams = field(default_factory=SamplingParams)


class LLMError(RuntimeError):
    """A generation call failed for good; the message says where and why (never the API key)."""


class LLMClient(Protocol):
    @property
    def fingerprint(self) -> str:
        """Identifies the model behind the client (weights or endpoint + model name)."""
        ...

    def complete(self, messages: Sequence[ChatMessage], params: SamplingParams) -> str: ...

    def complete_many(
        self, requests: Sequence[LLMRequest], progress: Progress = no_progress
    ) -> list[str | LLMError]: ...


def complete_sequentially(
    complete: Callable[[Sequence[ChatMessage], SamplingParams], str],
    requests: Sequence[LLMRequest],
    progress: Progress = no_progress,
    stage: str = "llm: generating",
) -> list[str | LLMError]:
    """The batch helper for backends that cannot run calls in parallel."""
    results: list[str | LLMError] = []
    progress(0, len(requests), stage)
    for done, request in enumerate(requests, start=1):
        try:
            results.append(complete(request.messages, request.params))
        except LLMError as exc:
            results.append(exc)
        progress(done, len(requests), stage)
    return results
