"""What every mining method takes (``MiningJob``) and returns (``MinedRun``).

Each method lives in its own module under ``hardneg.miners``; :data:`MINERS` names them, one per
:data:`hardneg.miners.spec.Method`, and :func:`miner_for` imports the chosen one.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from hardneg.core.backends import BackendChoice
from hardneg.core.beir import BeirSplit
from hardneg.core.cache import Cache
from hardneg.core.negatives import MinedQuery
from hardneg.core.progress import Progress, no_progress
from hardneg.core.workspace import Workspace
from hardneg.miners.spec import Method, MineSpec


@dataclass(frozen=True)
class MiningJob:
    """One mining run: what was asked (the spec, as given) and what it runs on."""

    spec: MineSpec
    split: BeirSplit
    workspace: Workspace
    cache: Cache | None = None
    device: str | None = None
    encoder_backend: BackendChoice = "torch"  # how the bi-encoder runs (core.backends)


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


# method -> "module:function" of its miner (imported when chosen: they load torch or faiss)
MINERS: dict[Method, str] = {
    "bm25": "hardneg.miners.bm25:mine_bm25",
    "dense": "hardneg.miners.dense:mine_dense",
    "cross-encoder": "hardneg.miners.cross_encoder:mine_cross_encoder",
    "llm": "hardneg.miners.llm.miner:mine_llm",
}


def miner_for(method: Method) -> MinerFn:
    module, _, name = MINERS[method].partition(":")
    miner: MinerFn = getattr(importlib.import_module(module), name)
    return miner
