"""Candidate lists: each query's top-N corpus rows under one scorer, plus its positives' scores.

They are what BM25, dense and cross-encoder mining compute (the expensive part) and what the
filters read (the cheap part), so they are cached through core's ``Cache`` protocol. A value is
a small ``.npz`` (no pickle): int32 corpus rows, float32 scores, and the ids as JSON bytes.
Keys hash everything that determines the lists (corpus, model, queries and qrels, depth,
parameters), so a change anywhere misses the cache instead of returning stale candidates.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hardneg.core.beir import BeirSplit
from hardneg.core.cache import Cache, cache_key
from hardneg.miners.filters import FilterConfig

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CACHE_NAMESPACE = "candidates"

# Bit flags for ``CandidateLists.sources``: which first-stage retriever proposed a candidate.
SOURCE_BM25 = 1
SOURCE_DENSE = 2


@dataclass(frozen=True)
class CandidateLists:
    """Row ``i`` is query ``query_ids[i]``: candidates best first, -1 where fewer were found."""

    query_ids: tuple[str, ...]
    positions: npt.NDArray[np.int32]  # (n_queries, depth), corpus rows, -1 padding
    scores: npt.NDArray[np.float32]  # (n_queries, depth)
    positive_ids: tuple[tuple[str, ...], ...]  # per query, sorted
    positive_scores: tuple[tuple[float, ...], ...]  # aligned with positive_ids
    sources: npt.NDArray[np.uint8] | None = None  # (n_queries, depth) SOURCE_* bit flags

    def __post_init__(self) -> None:
        n = len(self.query_ids)
        if self.positions.shape != self.scores.shape or self.positions.shape[0] != n:
            raise ValueError(
                f"positions {self.positions.shape} / scores {self.scores.shape} "
                f"do not match {n} queries"
            )
        if len(self.positive_ids) != n or len(self.positive_scores) != n:
            raise ValueError("one positive list per query expected")
        if self.sources is not None and self.sources.shape != self.positions.shape:
            raise ValueError(f"sources {self.sources.shape} != positions {self.positions.shape}")

    @property
    def depth(self) -> int:
        return int(self.positions.shape[1])

    def hits(self, row: int) -> list[tuple[int, float]]:
        """(corpus row, score) pairs of one query, best first, padding dropped."""
        return [
            (int(p), float(s))
            for p, s in zip(self.positions[row], self.scores[row], strict=True)
            if p >= 0
        ]

    def to_bytes(self) -> bytes:
        flat = np.asarray([s for scores in self.positive_scores for s in scores], np.float32)
        ids = json.dumps({"queries": self.query_ids, "positives": self.positive_ids})
        arrays: dict[str, npt.NDArray[np.generic]] = {
            "format": np.asarray([FORMAT_VERSION], np.int32),
            "positions": np.ascontiguousarray(self.positions, np.int32),
            "scores": np.ascontiguousarray(self.scores, np.float32),
            "positive_scores": flat,
            "ids": np.frombuffer(ids.encode(), np.uint8),
        }
        if self.sources is not None:
            arrays["sources"] = np.ascontiguousarray(self.sources, np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, value: bytes) -> CandidateLists:
        with np.load(io.BytesIO(value), allow_pickle=False) as data:
            if int(data["format"][0]) != FORMAT_VERSION:
                raise ValueError("candidate lists written by another format version")
            ids = json.loads(data["ids"].tobytes().decode())
            flat = data["positive_scores"].tolist()
            positive_ids = tuple(tuple(p) for p in ids["positives"])
            positive_scores: list[tuple[float, ...]] = []
            start = 0
            for names in positive_ids:
                positive_scores.append(tuple(flat[start : start + len(names)]))
                start += len(names)
            return cls(
                query_ids=tuple(ids["queries"]),
                positions=data["positions"].copy(),
                scores=data["scores"].copy(),
                positive_ids=positive_ids,
                positive_scores=tuple(positive_scores),
                sources=data["sources"].copy() if "sources" in data.files else None,
            )


def positive_ids_of(split: BeirSplit, query_id: str) -> tuple[str, ...]:
    """Docs judged relevant (grade > 0) for a query, sorted."""
    return tuple(sorted(d for d, grade in split.qrels.get(query_id, {}).items() if grade > 0))


def max_judged(split: BeirSplit) -> int:
    """The most qrels entries (any grade) of one query: extra depth so filters keep enough."""
    return max((len(judged) for judged in split.qrels.values()), default=0)


def max_positives(split: BeirSplit) -> int:
    return max((len(positive_ids_of(split, q)) for q in split.queries), default=1) or 1


def retrieval_depth(split: BeirSplit, filters: FilterConfig) -> int:
    """Enough candidates that ``range_max`` survive the removal of every judged document."""
    return filters.resolve_range_max(max_positives(split)) + max_judged(split)


def queries_fingerprint(split: BeirSplit) -> str:
    """Hash of the split's query ids, texts and qrels (positive scores depend on the qrels)."""
    digest = hashlib.sha256()
    for query_id in sorted(split.queries):
        judged = sorted(split.qrels.get(query_id, {}).items())
        digest.update(json.dumps([query_id, split.queries[query_id], judged]).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:32]


def bucket_depth(depth: int) -> int:
    """Round a retrieval depth up (>= 32, power of two) so small filter changes share a cache."""
    if depth <= 0:
        raise ValueError(f"depth must be positive, got {depth}")
    bucket = 32
    while bucket < depth:
        bucket *= 2
    return bucket


def candidates_key(method: str, parts: Mapping[str, object]) -> str:
    return cache_key(CACHE_NAMESPACE, {"format": FORMAT_VERSION, "method": method} | dict(parts))


def retrieval_key(method: str, split: BeirSplit, depth: int, parts: Mapping[str, object]) -> str:
    """The key of one retriever's top-``depth`` lists for ``split``'s queries; ``parts`` name
    the retriever (its corpus, model and parameters)."""
    return candidates_key(
        method, {"queries": queries_fingerprint(split), "depth": depth} | dict(parts)
    )


def cached_candidates(
    cache: Cache | None, key: str, compute: Callable[[], CandidateLists]
) -> tuple[CandidateLists, bool]:
    """The lists stored under ``key``, else ``compute()`` (then stored). Returns (lists, hit)."""
    if cache is not None:
        value = cache.get(key)
        if value is not None:
            try:
                return CandidateLists.from_bytes(value), True
            except (ValueError, KeyError, OSError) as exc:
                logger.warning("ignoring unreadable cached candidates %s: %s", key, exc)
    lists = compute()
    if cache is not None:
        cache.set(key, lists.to_bytes())
    return lists, False
