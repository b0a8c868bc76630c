"""The BM25 section of bench/mining.py: our BM25 mining against the same mining with rank-bm25.

Shared and not timed: tokenizing the corpus, once per library in the form it takes, from one
tokenizer (bm25s's: lower-case word tokens, English stopwords, Snowball stemming): token strings
for rank-bm25's ``BM25Okapi``, the same tokens as term ids with their vocabulary for our index
(bm25s's tokenizer makes the ids first and rebuilds the strings from them). Timed, each side:
indexing its tokenized corpus, tokenizing the queries, each query's top ``depth`` and its
positives' scores, then the same filter code (``select_from_candidates``) and output rows.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np
from rank_bm25 import BM25Okapi

from bench.machine import machine_info
from bench.mining_support import (
    FILTERS,
    Clock,
    clock,
    negative_overlap,
    ratio,
    stats_summary,
)
from hardneg.core.beir import BeirSplit
from hardneg.core.bm25 import BM25Index, BM25Params, BM25Tokenizer, TokenIds
from hardneg.core.workspace import Workspace
from hardneg.miners.bm25 import mine_bm25, search_candidates
from hardneg.miners.candidates import (
    CandidateLists,
    bucket_depth,
    positive_ids_of,
    retrieval_depth,
)
from hardneg.miners.disk_cache import DiskCache
from hardneg.miners.filters import normalize_text
from hardneg.miners.job import MinedRun, MiningJob
from hardneg.miners.selection import select_from_candidates
from hardneg.miners.spec import MineSpec

UNTIMED = (
    "shared, not timed: tokenizing the corpus with one tokenizer (bm25s's, English stopwords, "
    "Snowball stemming) into each library's input: token strings for rank-bm25, the same tokens "
    "as term ids + vocabulary for ours"
)
TIMED = (
    "each side: index from its tokenized corpus, tokenizing the queries, top-depth per query "
    "and the positives' scores, the same filter code and output rows"
)


def okapi_candidates(
    split: BeirSplit, corpus_tokens: list[list[str]], params: BM25Params, depth: int
) -> CandidateLists:
    """The same candidate lists (top-``depth`` + positive scores) with rank-bm25."""
    okapi = BM25Okapi(corpus_tokens, k1=params.k1, b=params.b)
    query_ids = list(split.queries)
    tokens = BM25Tokenizer(params)([split.queries[q] for q in query_ids])
    positions = np.full((len(query_ids), depth), -1, np.int32)  # (n_queries, depth)
    scores = np.zeros((len(query_ids), depth), np.float32)  # (n_queries, depth)
    positive_ids = tuple(positive_ids_of(split, q) for q in query_ids)
    positive_scores: list[tuple[float, ...]] = []
    for row, query in enumerate(tokens):
        every = okapi.get_scores(query)  # (n_docs,)
        top = np.argpartition(-every, depth)[:depth]
        top = top[np.argsort(-every[top], kind="stable")]
        positions[row], scores[row] = top, every[top]
        rows = [split.corpus.position(d) for d in positive_ids[row]]
        positive_scores.append(tuple(float(every[r]) for r in rows))
    return CandidateLists(tuple(query_ids), positions, scores, positive_ids, tuple(positive_scores))


@dataclass
class Side:
    """One side's timings over the alternating repeats, and its last mined run."""

    candidates: list[Clock]
    filters: list[Clock]
    run: MinedRun | None = None

    def total(self, attribute: str) -> float:
        """Median over the repeats of candidates + filters (``wall`` or ``cpu``)."""
        return statistics.median(
            getattr(c, attribute) + getattr(f, attribute)
            for c, f in zip(self.candidates, self.filters, strict=True)
        )

    def to_json(self) -> dict[str, object]:
        return {
            "median_wall_s": round(self.total("wall"), 3),
            "median_cpu_s": round(self.total("cpu"), 3),
            "candidates": [c.to_json() for c in self.candidates],
            "filters": [f.to_json() for f in self.filters],
        }


def time_side(
    side: Side, candidates: Callable[[], CandidateLists], method: str, split: BeirSplit
) -> None:
    with clock() as took_candidates:
        lists = candidates()
    with clock() as took_filters:
        side.run = select_from_candidates(split, lists, FILTERS, method)
    side.candidates.append(took_candidates)
    side.filters.append(took_filters)


def same_tokens(ids: TokenIds, strings: list[list[str]]) -> bool:
    """Whether the term ids spell the token strings, document by document."""
    terms = dict(zip(ids.vocab.values(), ids.vocab, strict=True))
    if ids.lengths.tolist() != [len(doc) for doc in strings]:
        return False
    return [terms[i] for i in ids.ids.tolist()] == [t for doc in strings for t in doc]


def same_scores_as_bm25s(
    index: BM25Index, split: BeirSplit, corpus_tokens: list[list[str]], depth: int
) -> bool:
    """Whether our top-``depth`` scores equal bm25s's, query by query (ties may order apart)."""
    params = index.params
    retriever = bm25s.BM25(k1=params.k1, b=params.b, method=params.method)
    retriever.index(corpus_tokens, show_progress=False)
    tokens = index.tokenize(list(split.queries.values()))
    ours = index.search_tokens(tokens, list(split.queries), depth).scores
    _, theirs = retriever.retrieve(tokens, k=depth, show_progress=False, n_threads=0)
    return bool(np.array_equal(ours, np.where(theirs > 0, theirs, 0).astype(np.float32)))


def bench_bm25(split: BeirSplit, work: Path, repeats: int) -> dict[str, object]:
    """Ours (index from term ids, top-N + positive scores, filters) against rank-bm25 doing the
    same from token strings (see the module docstring for what is shared and what is timed).
    ``repeats`` alternating runs; the speedup compares the medians."""
    params = BM25Params()
    tokenizer = BM25Tokenizer(params)
    texts = split.corpus.full_texts()
    corpus_tokens = tokenizer(texts)  # rank-bm25's input
    corpus_ids = tokenizer.ids(texts)  # ours: the same tokens
    depth = bucket_depth(retrieval_depth(split, FILTERS))
    ours, theirs = Side([], []), Side([], [])
    load_before = os.getloadavg()

    def our_candidates() -> CandidateLists:
        index = BM25Index.from_ids(corpus_ids, params, split.corpus.ids)
        return search_candidates(split, index, depth)

    def their_candidates() -> CandidateLists:
        return okapi_candidates(split, corpus_tokens, params, depth)

    for _ in range(repeats):
        time_side(ours, our_candidates, "bm25", split)
        time_side(theirs, their_candidates, "rank_bm25", split)
    load_after = os.getloadavg()
    with clock() as product:  # the product path from nothing: tokenizing, index saved to disk
        spec = MineSpec(filters=FILTERS)
        job = MiningJob(spec, split, Workspace(work / "bm25-home"), DiskCache(work / "c1"))
        run = mine_bm25(job)
    assert ours.run is not None and theirs.run is not None and run.rows == ours.run.rows
    theirs_negatives = {r.query: {normalize_text(t) for t in r.negatives} for r in theirs.run.rows}
    index = BM25Index.from_ids(corpus_ids, params, split.corpus.ids)
    return {
        "speedup": ratio(theirs.total("wall"), ours.total("wall")),
        "cpu_speedup": ratio(theirs.total("cpu"), ours.total("cpu")),
        "candidate_speedup": ratio(
            statistics.median(c.wall for c in theirs.candidates),
            statistics.median(c.wall for c in ours.candidates),
        ),
        "timing": f"median of {repeats} alternating runs per side, wall and process CPU",
        "untimed": UNTIMED,
        "timed": TIMED,
        "depth": depth,
        "same_tokens_both_sides": same_tokens(corpus_ids, corpus_tokens),
        "ours": ours.to_json(),
        "rank_bm25": theirs.to_json(),
        "ours_product_path_cold": product.to_json(),
        "scores_equal_bm25s": same_scores_as_bm25s(index, split, corpus_tokens, depth),
        "negative_overlap_with_rank_bm25": negative_overlap(ours.run, theirs_negatives),
        "stats": stats_summary(run, split, work / "stats"),
        "load_average": {"before": load_before, "after": load_after},
        "machine": machine_info(),
    }
