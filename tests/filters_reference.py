"""The negative filters for one query at a time: the readable reference of the five steps in
:mod:`hardneg.miners.filters`. Production runs the array version
(:func:`hardneg.miners.selection.select_from_candidates`); tests/test_filters.py checks this one
by hand and tests/test_selection_batch.py checks the two agree on random pools."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from hardneg.miners.filters import FilterConfig, Sampling, normalize_text, query_rng


def text_key(text: str) -> str:
    """The identity used for dedupe: a digest of the normalised text."""
    return hashlib.blake2b(normalize_text(text).encode(), digest_size=16).hexdigest()


class Candidate(NamedTuple):
    """A possible negative (a tuple: thousands are made per query set, cheaply)."""

    doc_id: str
    score: float
    key: str  # text_key of the candidate's text

    @classmethod
    def from_text(cls, doc_id: str, score: float, text: str) -> Candidate:
        return cls(doc_id, score, text_key(text))


@dataclass(frozen=True)
class QueryPool:
    """One query's candidates (best first) and what must never become its negative."""

    query_id: str
    query_key: str  # text_key of the query
    positive_scores: Mapping[str, float]  # positive doc id -> score under the miner's scorer
    positive_keys: frozenset[str]  # text_key of each positive's text
    candidates: tuple[Candidate, ...]
    judged_ids: frozenset[str] = frozenset()  # every qrels doc of the query, any grade

    @classmethod
    def from_texts(
        cls,
        query_id: str,
        query: str,
        positives: Mapping[str, tuple[float, str]],
        candidates: Sequence[Candidate],
        judged_ids: frozenset[str] = frozenset(),
    ) -> QueryPool:
        """Build a pool from texts: ``positives`` maps doc id -> (score, text)."""
        return cls(
            query_id,
            text_key(query),
            {doc_id: score for doc_id, (score, _) in positives.items()},
            frozenset(text_key(text) for _, text in positives.values()),
            tuple(candidates),
            judged_ids,
        )


@dataclass(frozen=True)
class Selection:
    negatives: tuple[Candidate, ...]
    removed: Mapping[str, int] = field(default_factory=dict)


def lowest_positive(positive_scores: Mapping[str, float]) -> float | None:
    return min(positive_scores.values()) if positive_scores else None


def drop_known(
    candidates: Sequence[Candidate], pool: QueryPool, dedupe: bool = True
) -> tuple[list[Candidate], Counter[str]]:
    """Step 1: remove positives, judged docs, copies of a positive or of the query, repeats."""
    removed: Counter[str] = Counter()
    seen: set[str] = set()
    kept: list[Candidate] = []
    for candidate in candidates:
        if candidate.doc_id in pool.positive_scores:
            removed["positive"] += 1
        elif candidate.doc_id in pool.judged_ids:
            removed["judged"] += 1
        elif candidate.key in pool.positive_keys:
            removed["positive_text"] += 1
        elif candidate.key == pool.query_key:
            removed["query_text"] += 1
        elif dedupe and candidate.key in seen:
            removed["duplicate_text"] += 1
        else:
            seen.add(candidate.key)
            kept.append(candidate)
    return kept, removed


def score_rejection(
    score: float, lowest_positive_score: float | None, config: FilterConfig
) -> str | None:
    """The first score filter that rejects ``score`` (step 3), or None when it passes."""
    p = lowest_positive_score
    if p is not None and config.absolute_margin is not None and score + config.absolute_margin > p:
        return "absolute_margin"
    relative = config.relative_margin
    if p is not None and relative is not None and score > p - abs(p) * relative:
        return "relative_margin"
    if config.max_score is not None and score > config.max_score:
        return "max_score"
    if config.min_score is not None and score < config.min_score:
        return "min_score"
    return None


def apply_score_filters(
    candidates: Sequence[Candidate], lowest_positive_score: float | None, config: FilterConfig
) -> tuple[list[Candidate], Counter[str]]:
    removed: Counter[str] = Counter()
    kept: list[Candidate] = []
    for candidate in candidates:
        reason = score_rejection(candidate.score, lowest_positive_score, config)
        if reason is None:
            kept.append(candidate)
        else:
            removed[reason] += 1
    return kept, removed


def sample(
    candidates: Sequence[Candidate], n: int, strategy: Sampling, rng: random.Random
) -> list[Candidate]:
    """Step 5: the best ``n``, or ``n`` drawn uniformly and re-sorted by score."""
    if strategy == "top" or len(candidates) <= n:
        return list(candidates[:n])
    chosen = rng.sample(range(len(candidates)), k=n)
    return [candidates[i] for i in sorted(chosen)]


def select_negatives(pool: QueryPool, config: FilterConfig, max_positives: int = 1) -> Selection:
    """Run every filter over one query's candidates and pick its negatives."""
    ordered = sorted(pool.candidates, key=lambda c: -c.score)  # stable: ties keep retrieval order
    kept, removed = drop_known(ordered, pool, config.dedupe)
    kept = kept[: config.resolve_range_max(max_positives)]  # the window, not a removal
    kept, by_score = apply_score_filters(kept, lowest_positive(pool.positive_scores), config)
    removed.update(by_score)
    skipped = min(config.range_min, len(kept))
    if skipped:
        removed["range_min"] += skipped
        kept = kept[skipped:]
    rng = query_rng(config.seed, pool.query_id)
    chosen = sample(kept, config.num_negatives, config.sampling, rng)
    return Selection(tuple(chosen), {k: v for k, v in removed.items() if v})
