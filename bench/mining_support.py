"""What the sections of bench/mining.py share: the filters, clocks, stats and overlaps."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hardneg.core.beir import BeirSplit
from hardneg.miners.filters import FilterConfig, normalize_text
from hardneg.miners.job import MinedRun
from hardneg.miners.stats import write_stats

# NV-Retriever's TopK-PercPos (95%): the recommended sentence-transformers setting
FILTERS = FilterConfig(num_negatives=5, relative_margin=0.05, sampling="top")


@dataclass
class Clock:
    wall: float = 0.0
    cpu: float = 0.0

    def to_json(self) -> dict[str, float]:
        return {"wall_s": round(self.wall, 3), "cpu_s": round(self.cpu, 3)}


@contextmanager
def clock() -> Iterator[Clock]:
    result = Clock()
    wall, cpu = time.perf_counter(), time.process_time()
    yield result
    result.wall, result.cpu = time.perf_counter() - wall, time.process_time() - cpu


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3) if denominator > 0 else float("inf")


def stats_summary(run: MinedRun, split: BeirSplit, folder: Path) -> dict[str, object]:
    """Write the run's stats report (JSON + PNG) and keep its headline numbers."""
    _, png, stats = write_stats(folder / run.method, run, split.qrels)
    queries = stats["queries"]
    assert isinstance(queries, dict)
    return {
        "queries_with_negatives": len(run.rows),
        "queries_skipped": queries["queries_skipped"],
        "queries_short": queries["queries_short"],
        "negatives": stats["negatives"],
        "scores": stats["scores"],
        "stats_report_written": png.is_file(),
    }


def negative_overlap(ours: MinedRun, theirs: dict[str, set[str]]) -> float:
    """Share of the reference's negatives (by normalised text, per query text) we also picked."""
    mine: dict[str, set[str]] = {}
    for row in ours.rows:
        mine.setdefault(row.query, set()).update(normalize_text(t) for t in row.negatives)
    shared = sum(len(negatives & mine.get(query, set())) for query, negatives in theirs.items())
    total = sum(len(negatives) for negatives in theirs.values())
    return round(shared / total, 4) if total else 0.0
