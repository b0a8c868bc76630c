"""Foundation benchmark: BEIR SciFact numbers and speed ratios, measured side by side in one run.

    python -m bench.foundation [--data DIR] [--output bench/results/foundation.json]

Writes BM25 and zero-shot all-MiniLM-L6-v2 metrics on the test split, the BM25 query throughput
against rank-bm25's BM25Okapi on the same tokens, and how much faster a second dense evaluation
is than the first (the corpus embeddings are reused, never re-encoded).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from rank_bm25 import BM25Okapi

from bench.machine import machine_info
from hardneg.core.atomic import write_text_atomic
from hardneg.core.beir import Corpus, find_corpus_file, load_corpus, load_split
from hardneg.core.bm25 import BM25Index, BM25Params
from hardneg.core.encoders import load_encoder
from hardneg.core.workspace import Workspace
from hardneg.trainers.evaluation import evaluate_bm25, evaluate_dense

logger = logging.getLogger("bench.foundation")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "beir" / "scifact"
K = 100


def bm25_throughput(
    index: BM25Index, corpus: Corpus, queries: list[str], query_ids: list[str], repeats: int
) -> dict[str, float]:
    """Queries per second of our index and of rank-bm25 on identical tokens, top-K each."""
    tokens = index.tokenize(queries)
    corpus_tokens = index.tokenize(corpus.full_texts())
    reference = BM25Okapi(corpus_tokens, k1=index.params.k1, b=index.params.b)

    started = time.perf_counter()
    for _ in range(repeats):
        index.search_tokens(tokens, query_ids, K)
    ours = (time.perf_counter() - started) / repeats

    started = time.perf_counter()
    for query in tokens:
        scores = reference.get_scores(query)
        top = np.argpartition(-scores, K)[:K]
        top[np.argsort(-scores[top])]
    theirs = time.perf_counter() - started
    return {
        "queries": len(queries),
        "ours_queries_per_s": len(queries) / ours,
        "rank_bm25_queries_per_s": len(queries) / theirs,
        "speedup": theirs / ours,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--output", type=Path, default=REPO / "bench" / "results" / "foundation.json"
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    corpus = load_corpus(find_corpus_file(args.data))
    split = load_split(args.data, "test", corpus)
    query_ids = list(split.queries)
    queries = [split.queries[q] for q in query_ids]

    with tempfile.TemporaryDirectory(prefix="hardneg-bench-") as home:
        workspace = Workspace(Path(home))  # empty: the first dense run must encode everything
        bm25 = evaluate_bm25(split, workspace, BM25Params())
        logger.info("bm25 %s", bm25.evaluation.mean)
        index = BM25Index.load_or_build(
            workspace.bm25_dir(corpus.fingerprint, BM25Params()), corpus
        )
        throughput = bm25_throughput(index, corpus, queries, query_ids, args.repeats)
        logger.info("bm25 throughput %s", throughput)

        runs = []
        for attempt in ("first", "second"):
            started = time.perf_counter()
            model = load_encoder()
            dense = evaluate_dense(split, model, workspace)
            runs.append(time.perf_counter() - started)
            logger.info("dense %s run: %.1f s %s", attempt, runs[-1], dense.evaluation.mean)

    result = {
        "dataset": "scifact",
        "split": "test",
        "num_queries": len(query_ids),
        "bm25": {**bm25.evaluation.mean, "params": BM25Params().model_dump()},
        "dense_zero_shot": {**dense.evaluation.mean, "model": "all-MiniLM-L6-v2"},
        "bm25_speedup_vs_rank_bm25": throughput["speedup"],
        "bm25_throughput": throughput,
        "dense_reuse_speedup": runs[0] / runs[1],
        "dense_evaluate_seconds": {"first": runs[0], "second": runs[1]},
        "machine": machine_info(),
    }
    write_text_atomic(args.output, json.dumps(result, indent=2) + "\n")
    logger.info("wrote %s", args.output)


if __name__ == "__main__":
    main()
