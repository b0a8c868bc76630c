"""What every mining method takes (``MiningJob``) and returns (``MinedRun``).

The service's mine pipeline keeps a dict ``method name -> MinerFn`` and calls the chosen one;
each method lives in its own module under ``hardneg.miners``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from hardneg.core.backends import BackendChoice
from hardneg.core.beir import BeirSplit
from hardneg.core.bm25 import BM25Params
from hardneg.core.cache import Cache
from hardneg.core.dense import DenseIndexConfig
from hardneg.core.negatives import MinedQuery
from hardneg.core.progress import Progress, no_progress
from hardneg.core.workspace import Workspace
from hardneg.miners.filters import FilterConfig


@dataclass(frozen=True)
class MiningJob:
    """One mining run: the data, the filters and each method's knobs."""

    split: BeirSplit
    workspace: Workspace
    filters: FilterConfig = field(default_factory=FilterConfig)
    cache: Cache | None = None
    model: str | None = None  # bi-encoder id or path (dense; the cross-encoder's dense pool)
    cross_encoder: str | None = None  # cross-encoder id or path (cross-encoder method)
    cross_encoder_max_length: int | None = None  # None: the cross-encoder's own
    device: str | None = None
    encoder_backend: BackendChoice = "torch"  # how the bi-encoder runs (core.backends)
    batch_size: int = 64
    max_length: int | None = None  # bi-encoder max sequence length (None: the model's)
    bm25: BM25Params = field(default_factory=BM25Params)
    index: DenseIndexConfig = field(default_factory=DenseIndexConfig)
    query_prompt: str = ""
    corpus_prompt: str = ""
    pool_depth: int = 30  # cross-encoder: top-N from each of BM25 and dense, then the union
    denoise_margin: float | None = 0.0  # cross-encoder: see miners.cross_encoder
    options: Mapping[str, object] = field(default_factory=dict)  # method-specific extras


@dataclass(frozen=True)
class FilterReport:
    """What the filters did: removals by reason, and queries that ended short or empty."""

    num_queries: int
    num_negatives: int
    full: int  # queries that got num_negatives
    short: int  # queries kept with fewer than num_negatives
    skipped: Mapping[str, int]  # reason -> number of queries written without a row
    removed: Mapping[str, int]  # filter reason -> candidates removed
    skipped_ids: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    short_ids: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "num_queries": self.num_queries,
            "num_negatives": self.num_negatives,
            "queries_full": self.full,
            "queries_short": self.short,
            "queries_skipped": dict(self.skipped),
            "candidates_removed": dict(self.removed),
            "skipped_query_ids": {k: list(v) for k, v in self.skipped_ids.items()},
            "short_query_ids": list(self.short_ids),
        }


@dataclass(frozen=True)
class MinedRun:
    """The rows of the mined file, the filter report, and provenance for the meta sidecar."""

    method: str
    rows: tuple[MinedQuery, ...]
    report: FilterReport
    provenance: Mapping[str, object] = field(default_factory=dict)


class MinerFn(Protocol):
    def __call__(self, job: MiningJob, progress: Progress = no_progress) -> MinedRun: ...


def merge_counts(counts: list[Mapping[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for count in counts:
        total.update(count)
    return dict(total)
