"""Batched in-process generation (several sequences per llama_decode) against the sequential path,
with the packaged SmolLM2-135M-Instruct on the CPU: the sequential outputs (up to float rounding)
under greedy decoding and seeded sampling, the same cache keys, failures and cancellation kept to
their own requests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hardneg.miners.disk_cache import DiskCache
from hardneg.miners.llm.backends import BackendConfig, open_client
from hardneg.miners.llm.client import ChatMessage, LLMError, LLMRequest, SamplingParams
from hardneg.miners.llm.generation import GenerationJob, generate_all, llm_cache_key
from hardneg.miners.llm.llama_cpp_client import LlamaCppClient, LlamaCppConfig
from hardneg.miners.llm.parsing import PassageLimits, clean_passage
from hardneg.miners.llm.prompts import NEGATIVE

N_CTX = 1024
ITEMS = [
    ("which animals descend from wolves", "Dogs are loyal domesticated descendants of wolves."),
    ("how do plants make sugar", "Plants turn sunlight, water and CO2 into sugar."),
    ("what comes out of a volcano", "Magma erupts through vents in the crust of the earth."),
    ("what do cats eat", "Cats are small carnivorous mammals that eat meat."),
    ("why is the sky blue", "Air scatters blue sunlight more than red sunlight."),
    ("how do vaccines work", "Vaccines train the immune system to recognise a pathogen."),
    ("what causes tides", "The moon's gravity pulls the oceans, raising the tides."),
    ("how is insulin made", "Beta cells of the pancreas make and release insulin."),
]


def jobs(temperature: float, max_tokens: int = 32) -> list[GenerationJob]:
    return [
        GenerationJob(
            NEGATIVE,
            {"query": query, "positive": positive},
            SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed),
        )
        for seed, (query, positive) in enumerate(ITEMS)
    ]


@pytest.fixture(scope="module")
def sequential() -> Iterator[LlamaCppClient]:
    with LlamaCppClient(LlamaCppConfig(n_ctx=N_CTX, n_threads=1)) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def batched() -> Iterator[LlamaCppClient]:
    with LlamaCppClient(LlamaCppConfig(n_ctx=N_CTX, n_threads=1, concurrency=4)) as loaded:
        yield loaded


def test_batched_outputs_match_the_sequential_ones(
    sequential: LlamaCppClient, batched: LlamaCppClient
) -> None:
    """8 prompts through 4 slots, greedy and seeded sampling. The batched context copies the
    sequential one's settings, so a row of a batch gets the computation it gets alone up to the
    rounding of a several-row matrix product: here every text was equal, in the bench 62 of 64 at
    concurrency 8 (bench/results/performance.json, llm). A differing text must still parse."""
    for temperature in (0.0, 0.8):
        requests = [job.request() for job in jobs(temperature)]
        expected = sequential.complete_many(requests)
        got = batched.complete_many(requests)
        assert all(isinstance(text, str) and text.strip() for text in got)
        same = sum(a == b for a, b in zip(expected, got, strict=True))
        assert same >= len(requests) - 2, f"temperature {temperature}: {same}/{len(requests)} equal"
        parsed = [
            clean_passage(str(text), query, PassageLimits()).text is not None
            for text, (query, _) in zip(got, ITEMS, strict=True)
        ]
        parsed_sequential = [
            clean_passage(str(text), query, PassageLimits()).text is not None
            for text, (query, _) in zip(expected, ITEMS, strict=True)
        ]
        assert sum(parsed) >= min(sum(parsed_sequential), len(ITEMS) // 2)


def test_cache_keys_do_not_depend_on_concurrency(
    sequential: LlamaCppClient, batched: LlamaCppClient, tmp_path: Path
) -> None:
    work = jobs(0.8, max_tokens=16)
    cache = DiskCache(tmp_path / "cache")
    first = generate_all(batched, work, cache)
    assert (first.stats.generated, first.stats.cached) == (len(work), 0)
    again = generate_all(sequential, work, cache)  # what the batched run stored is reused
    assert (again.stats.generated, again.stats.cached) == (0, len(work))
    assert again.outputs == first.outputs
    assert sequential.fingerprint == batched.fingerprint
    for job in work:
        key = llm_cache_key(batched.fingerprint, job.template.version, job.request())
        assert cache.get(key) is not None


def test_a_bad_prompt_fails_alone_and_progress_ticks_per_output(batched: LlamaCppClient) -> None:
    requests = [job.request() for job in jobs(0.8, max_tokens=12)]
    too_long = LLMRequest((ChatMessage("user", "wolves hunt in packs " * 400),), requests[0].params)
    requests.insert(3, too_long)
    seen: list[tuple[int, int]] = []
    results = batched.complete_many(requests, lambda done, total, _: seen.append((done, total)))
    assert isinstance(results[3], LLMError) and "context window" in str(results[3])
    assert all(isinstance(r, str) and r.strip() for i, r in enumerate(results) if i != 3)
    assert seen[0] == (0, 9) and seen[-1] == (9, 9)
    assert [done for done, _ in seen] == list(range(10))


class CancelledError(Exception):
    pass


def test_cancelling_drops_the_running_sequences_and_the_client_still_works(
    batched: LlamaCppClient,
) -> None:
    requests = [job.request() for job in jobs(0.0, max_tokens=12)]
    uncancelled = batched.complete_many(requests[:5])

    def cancel_after_two(done: int, total: int, stage: str) -> None:
        if done >= 2:
            raise CancelledError

    with pytest.raises(CancelledError):
        batched.complete_many(requests, cancel_after_two)
    # nothing of the cancelled sequences is left in their KV streams: the same prompts again
    # give what they gave before the cancel
    assert batched.complete_many(requests[:5]) == uncancelled


def test_backend_config_sets_the_concurrency() -> None:
    config = BackendConfig(concurrency=3, n_ctx=512, n_threads=1)
    assert config.concurrency == 3
    request = LLMRequest((ChatMessage("user", "Name one animal."),), SamplingParams(max_tokens=4))
    with open_client(config) as client:
        assert isinstance(client, LlamaCppClient) and client.config.concurrency == 3
        assert all(isinstance(r, str) for r in client.complete_many([request] * 4))
    with pytest.raises(ValueError, match="concurrency must be positive"):
        LlamaCppConfig(concurrency=0)
    assert BackendConfig().concurrency >= 1
