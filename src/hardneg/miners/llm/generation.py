"""Run prompt jobs through an ``LLMClient`` with a cache in front of it.

The cache key covers everything that determines an output: the model fingerprint, the prompt
version, the sampling parameters (seed included) and the rendered messages (so the input text).
Only successful calls are stored; a failed call leaves nothing behind, so a rerun retries it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from hardneg.core.cache import Cache, cache_key
from hardneg.core.progress import Progress, no_progress
from hardneg.miners.llm.client import LLMClient, LLMError, LLMRequest, SamplingParams
from hardneg.miners.llm.prompts import PromptTemplate

logger = logging.getLogger(__name__)

LLM_NAMESPACE = "llm"


def llm_cache_key(fingerprint: str, prompt_version: str, request: LLMRequest) -> str:
    return cache_key(
        LLM_NAMESPACE,
        {
            "model": fingerprint,
            "prompt_version": prompt_version,
            "params": asdict(request.params),
            "messages": [m.to_json() for m in request.messages],
        },
    )


@dataclass(frozen=True)
class GenerationJob:
    template: PromptTemplate
    values: Mapping[str, str]
    params: SamplingParams

    def request(self) -> LLMRequest:
        return LLMRequest(self.template.render(self.values), self.params)


@dataclass(frozen=True)
class GenerationStats:
    requested: int = 0
    cached: int = 0
    generated: int = 0
    failed: int = 0
    seconds: float = 0.0  # wall time of the LLM calls (cache lookups excluded)
    generated_chars: int = 0

    def to_json(self) -> dict[str, object]:
        rate = self.generated / self.seconds if self.seconds > 0 else None
        return asdict(self) | {"generations_per_second": rate}


@dataclass(frozen=True)
class GenerationBatch:
    outputs: tuple[str | LLMError, ...]  # one per job, in job order
    stats: GenerationStats


def _decode(value: bytes) -> str | None:
    try:
        payload = json.loads(value)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    text = payload.get("text") if isinstance(payload, dict) else None
    return text if isinstance(text, str) else None


CHUNK = 32  # requests per complete_many call (the openai backend runs a chunk concurrently)


def generate_all(
    client: LLMClient,
    jobs: Sequence[GenerationJob],
    cache: Cache | None = None,
    progress: Progress = no_progress,
) -> GenerationBatch:
    """Outputs for ``jobs``: cached ones looked up, the rest generated (and then cached)."""
    requests = [job.request() for job in jobs]
    keys = [
        llm_cache_key(client.fingerprint, j.template.version, r)
        for j, r in zip(jobs, requests, strict=True)
    ]
    outputs: list[str | LLMError | None] = [None] * len(jobs)
    if cache is not None:
        for i, key in enumerate(keys):
            stored = cache.get(key)
            outputs[i] = _decode(stored) if stored is not None else None
    missing = [i for i, out in enumerate(outputs) if out is None]
    cached = len(jobs) - len(missing)
    started = time.perf_counter()
    failed = chars = 0
    # in chunks, each cached as soon as it is written: a crashed run loses one chunk at most
    for start in range(0, len(missing), CHUNK):
        chunk = missing[start : start + CHUNK]

        def overall(done: int, total: int, stage: str, offset: int = start) -> None:
            progress(offset + done, len(missing), stage)

        fresh = client.complete_many([requests[i] for i in chunk], overall)
        for i, result in zip(chunk, fresh, strict=True):
            outputs[i] = result
            if isinstance(result, LLMError):
                failed += 1
                continue
            chars += len(result)
            if cache is not None:
                payload = {
                    "text": result,
                    "model": client.fingerprint,
                    "prompt": jobs[i].template.version,
                }
                cache.set(keys[i], json.dumps(payload, ensure_ascii=False).encode("utf-8"))
    seconds = time.perf_counter() - started
    if failed:
        logger.warning("%d of %d LLM calls failed", failed, len(missing))
    stats = GenerationStats(len(jobs), cached, len(missing) - failed, failed, seconds, chars)
    final = tuple(out if out is not None else LLMError("no output") for out in outputs)
    return GenerationBatch(final, stats)
