"""Batched LLM generation with one thread against all cores, on the quick profile's prompts.

    python -m bench.llm_threads [--prompts 32] [--concurrency 8]

The LLM arm's negatives prompts (as ``bench.performance_llm`` builds them) go through two
batched llama.cpp clients in one process, one with ``n_threads=1`` and one with every core,
chunk by chunk in alternating order so a change of load hits both alike. Prints the seconds
of each, the ratio and how many outputs are identical; it set the batched context's thread
count (``hardneg.miners.llm.llama_cpp_batch``).
"""

from __future__ import annotations

import argparse
import logging
import os
from contextlib import ExitStack

from bench.performance_llm import DEFAULT_DATA, interleaved, quick_jobs
from hardneg.miners.llm.llama_cpp_client import LlamaCppClient, LlamaCppConfig

logger = logging.getLogger("bench.llm_threads")
CHUNK = 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    _, work = quick_jobs(DEFAULT_DATA, args.prompts)
    cores = os.cpu_count() or 1
    threads = {"one thread": 1, f"{cores} threads": cores}
    with ExitStack() as stack:
        clients = {
            name: stack.enter_context(
                LlamaCppClient(LlamaCppConfig(concurrency=args.concurrency, n_threads=n))
            )
            for name, n in threads.items()
        }
        outputs, seconds = interleaved(clients, work, CHUNK)
    one, many = (outputs[name] for name in threads)
    same = sum(a == b for a, b in zip(one, many, strict=True))
    first, second = threads
    logger.info(
        "%s: %.1f s, %s: %.1f s, ratio %.2f, %d of %d outputs identical, load %s",
        first, seconds[first], second, seconds[second], seconds[first] / seconds[second],
        same, len(work), os.getloadavg(),
    )  # fmt: skip


if __name__ == "__main__":
    main()
