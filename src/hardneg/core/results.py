"""The one result type every retriever returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class SearchResults:
    """Top-k hits per query, best first.

    ``positions[i, j]`` is the corpus row of query ``i``'s ``j``-th hit (-1 where fewer than k
    documents matched) and ``scores[i, j]`` its score.
    """

    query_ids: tuple[str, ...]
    positions: npt.NDArray[np.int64]  # (n_queries, k)
    scores: npt.NDArray[np.float32]  # (n_queries, k)
    corpus_ids: Sequence[str]

    def __post_init__(self) -> None:
        if self.positions.shape != self.scores.shape:
            raise ValueError(f"positions {self.positions.shape} != scores {self.scores.shape}")
        if self.positions.shape[0] != len(self.query_ids):
            raise ValueError("one row of hits per query expected")

    @property
    def k(self) -> int:
        return int(self.positions.shape[1])

    def hits(self, row: int) -> list[tuple[str, float]]:
        """(doc id, score) pairs of one query, best first, padding dropped."""
        return [
            (self.corpus_ids[int(p)], float(s))
            for p, s in zip(self.positions[row], self.scores[row], strict=True)
            if p >= 0
        ]

    def to_run(self) -> dict[str, dict[str, float]]:
        """A TREC-style run: query id -> {doc id -> score}."""
        return {qid: dict(self.hits(row)) for row, qid in enumerate(self.query_ids)}
