"""BM25-mined negatives: each query's BM25 top-N from core's ``BM25Index``.

The positives' BM25 scores are looked up too, even when a positive is not in the top-N, so the
positive-aware margins of ``miners.filters`` work (e.g. drop candidates scoring above 0.95 x the
positive, as in Moreira et al., "NV-Retriever", 2024).
"""

from __future__ import annotations

import logging

import bm25s
import numpy as np

from hardneg.core.beir import BeirSplit
from hardneg.core.bm25 import FORMAT_VERSION as BM25_FORMAT
from hardneg.core.bm25 import BM25Index, BM25Params
from hardneg.core.cache import Cache
from hardneg.core.progress import Progress, no_progress
from hardneg.core.workspace import Workspace
from hardneg.miners.candidates import (
    CandidateLists,
    bucket_depth,
    cached_candidates,
    positive_ids_of,
    retrieval_depth,
    retrieval_key,
)
from hardneg.miners.job import MinedRun, MiningJob
from hardneg.miners.selection import select_retrieved

logger = logging.getLogger(__name__)

METHOD = "bm25"


def bm25_key(split: BeirSplit, params: BM25Params, depth: int) -> str:
    return retrieval_key(
        METHOD,
        split,
        depth,
        {
            "corpus": split.corpus.fingerprint,
            "params": params.model_dump(),
            "bm25s": bm25s.__version__,  # its tokenizer
            "index": BM25_FORMAT,  # 2: our numpy index (top-k ties now go to the lower row)
        },
    )


def search_candidates(
    split: BeirSplit,
    index: BM25Index,
    depth: int,
    progress: Progress = no_progress,
) -> CandidateLists:
    """Top-``depth`` BM25 hits per query plus the BM25 scores of its positives (read from the
    same score block as the hits, so a positive in the top-``depth`` has its listed score)."""
    query_ids = list(split.queries)
    tokens = index.tokenize([split.queries[q] for q in query_ids])
    positive_ids = tuple(positive_ids_of(split, q) for q in query_ids)
    rows = [[split.corpus.position(d) for d in positives] for positives in positive_ids]
    results, positive_scores = index.search_and_score(tokens, query_ids, depth, rows, progress)
    return CandidateLists(
        query_ids=tuple(query_ids),
        positions=results.positions.astype(np.int32),
        scores=results.scores.astype(np.float32),
        positive_ids=positive_ids,
        positive_scores=tuple(tuple(scores) for scores in positive_scores),
    )


def bm25_candidates(
    split: BeirSplit,
    workspace: Workspace,
    depth: int,
    params: BM25Params | None = None,
    cache: Cache | None = None,
    progress: Progress = no_progress,
) -> tuple[CandidateLists, bool]:
    """Cached BM25 candidate lists; the index is built (or loaded) only on a cache miss."""
    params = params or BM25Params()
    depth = bucket_depth(depth)
    key = bm25_key(split, params, depth)

    def compute() -> CandidateLists:
        index = workspace.bm25_index(split.corpus, params, progress)
        return search_candidates(split, index, depth, progress)

    return cached_candidates(cache, key, compute)


def mine_bm25(job: MiningJob, progress: Progress = no_progress) -> MinedRun:
    lists, hit = bm25_candidates(
        job.split,
        job.workspace,
        retrieval_depth(job.split, job.spec.filters),
        job.spec.bm25,
        job.cache,
        progress,
    )
    provenance = {
        "scorer": "bm25",
        "bm25": job.spec.bm25.model_dump(),
    }
    return select_retrieved(job, METHOD, lists, hit, provenance, progress)
