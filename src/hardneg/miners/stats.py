"""A stats report per mining run: counts, skipped queries with reasons, score distributions.

Written as JSON and as a PNG histogram of positive vs negative scores (matplotlib's Agg canvas,
no pyplot global state, so it is safe in workers and headless boxes).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hardneg.core.atomic import atomic_path, write_text_atomic
from hardneg.core.negatives import MinedQuery
from hardneg.miners.job import MinedRun

logger = logging.getLogger(__name__)

STATS_FILE = "stats.json"
HISTOGRAM_FILE = "scores.png"


def describe(values: Sequence[float]) -> dict[str, float | int | None]:
    """Count, mean, std, min, quartiles and max (None when there are no values)."""
    if not values:
        return {"count": 0, "mean": None, "std": None, "min": None, "max": None}
    data = np.asarray(values, np.float64)
    q25, median, q75 = np.quantile(data, [0.25, 0.5, 0.75])
    return {
        "count": len(data),
        "mean": float(data.mean()),
        "std": float(data.std()),
        "min": float(data.min()),
        "p25": float(q25),
        "median": float(median),
        "p75": float(q75),
        "max": float(data.max()),
    }


def score_lists(rows: Sequence[MinedQuery]) -> dict[str, list[float]]:
    """Positive scores, negative scores, and (lowest positive - negative) per negative."""
    positives: list[float] = []
    negatives: list[float] = []
    margins: list[float] = []
    for row in rows:
        pos = [s for s in row.positive_scores if s is not None]
        neg = [s for s in row.negative_scores if s is not None]
        positives.extend(pos)
        negatives.extend(neg)
        if pos:
            margins.extend(min(pos) - s for s in neg)
    return {"positive": positives, "negative": negatives, "margin": margins}


def run_stats(
    run: MinedRun,
    qrels: Mapping[str, Mapping[str, int]],
    extra: Mapping[str, object] | None = None,
) -> dict[str, object]:
    scores = score_lists(run.rows)
    negatives = [len(r.negatives) for r in run.rows]
    return {
        "method": run.method,
        "queries": run.report.to_json(),
        "rows": len(run.rows),
        "negatives": sum(negatives),
        "negatives_per_query": describe([float(n) for n in negatives]),
        "scores": {name: describe(values) for name, values in scores.items()},
        "provenance": dict(run.provenance),
    } | dict(extra or {})


def plot_scores(path: Path, rows: Sequence[MinedQuery], title: str) -> None:
    """Overlaid histograms of positive and negative scores, written atomically as PNG."""
    scores = score_lists(rows)
    figure = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    values = scores["positive"] + scores["negative"]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    bins = [float(b) for b in np.linspace(low, high if high > low else low + 1.0, 41)]
    for name, color in (("positive", "tab:green"), ("negative", "tab:red")):
        label = f"{name} (n={len(scores[name])})"
        axes.hist(scores[name], bins=bins, alpha=0.55, color=color, label=label)
    axes.set_xlabel("score")
    axes.set_ylabel("count")
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as temp:
        figure.savefig(temp, format="png")


def write_stats(
    folder: Path,
    run: MinedRun,
    qrels: Mapping[str, Mapping[str, int]],
    extra: Mapping[str, object] | None = None,
) -> tuple[Path, Path, dict[str, object]]:
    """Write ``stats.json`` and ``scores.png`` into ``folder``; returns their paths and stats."""
    stats = run_stats(run, qrels, extra)
    json_path = folder / STATS_FILE
    png_path = folder / HISTOGRAM_FILE
    write_text_atomic(json_path, json.dumps(stats, indent=2, default=str))
    plot_scores(png_path, run.rows, f"{run.method}: positive vs negative scores")
    return json_path, png_path, stats
