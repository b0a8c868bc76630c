"""The experiment's report: ``report.json`` (numbers), ``report.md`` (the table and what the
profile trims) and the plots of :mod:`.plots`."""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hardneg.core.atomic import write_text_atomic
from hardneg.service.pipelines.experiment.data import ExperimentData
from hardneg.service.pipelines.experiment.plots import (
    plot_curves,
    plot_metrics,
    plot_scores,
    read_history,
    training_curves,
)

if TYPE_CHECKING:
    from hardneg.service.pipelines.experiment.run import ExperimentRequest

HEADLINE = ("ndcg@10", "recall@100", "p@10", "mrr@10")
REPORT_JSON = "report.json"
REPORT_MD = "report.md"

Stage = dict[str, Any]


def _metrics(stage: Stage) -> dict[str, float]:
    """Metrics of an evaluation stage or of a training stage's after-training evaluation."""
    if "summary" in stage:
        after = stage["summary"].get("metrics_after") or {}
        return {k: round(float(v), 4) for k, v in after.items()}
    return {k: round(float(v), 4) for k, v in stage["metrics"].items()}


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def method_entry(runs: Mapping[str, Stage], scores: Mapping[str, list[float]]) -> dict[str, Any]:
    final = _metrics(runs["star_adore"])
    stats = runs["mining"]["stats"]
    per_query = stats.get("negatives_per_query") or {}
    return {name: final.get(name) for name in HEADLINE} | {
        "star": _metrics(runs["star"]),
        "star_adore": final,
        "mining": {
            "queries": stats.get("rows"),
            "negatives": stats.get("negatives"),
            "negatives_per_query": per_query.get("mean"),
            "false_negative_fraction": stats.get("false_negative_fraction"),
            "skipped": (stats.get("queries") or {}).get("skipped"),
            "seconds": runs["mining"].get("stage_seconds"),
        },
        "hardness": {
            "positive_cosine_mean": _mean(scores.get("positive", [])),
            "negative_cosine_mean": _mean(scores.get("negative", [])),
        },
        "train_seconds": round(
            runs["star"].get("stage_seconds", 0) + runs["star_adore"].get("stage_seconds", 0), 1
        ),
    }


def reranker_summary(folder: Path, negatives_per_query: int) -> dict[str, Any]:
    """How far the cross-encoder trained here got: its listwise loss against chance, ln(1 + k)."""
    losses = [e["loss"] for e in read_history(folder) if e.get("event") == "train"]
    return {
        "model": str(folder),
        "first_loss": round(losses[0], 4) if losses else None,
        "final_loss": round(losses[-1], 4) if losses else None,
        "chance_loss": round(math.log(1 + negatives_per_query), 4),
    }


def machine() -> dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "cpu_cores": os.cpu_count(),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def build_report(
    request: ExperimentRequest,
    data: ExperimentData,
    baselines: Mapping[str, Stage],
    methods: Mapping[str, Mapping[str, Stage]],
    scores: Stage,
    wall_seconds: float,
    stage_seconds: Mapping[str, float],
    reranker: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    profile = request.profile
    entries = {m: method_entry(runs, scores["methods"].get(m, {})) for m, runs in methods.items()}
    best = max(entries, key=lambda m: entries[m]["ndcg@10"] or 0.0)
    return {
        "dataset": request.data,
        "model": request.model or "all-MiniLM-L6-v2 (packaged)",
        "profile": profile.name,
        "trims": list(profile.trims),
        "settings": profile.to_dict() | {"seed": request.seed, "llm": request.llm.describe()},
        "budget": {
            "train_queries": data.train_queries,
            "negatives_per_query": profile.num_negatives,
            "optimizer_steps": profile.star_steps + profile.adore_steps,
            "generated_training_queries": data.generated,
        },
        "cross_encoder": dict(reranker) if reranker else request.cross_encoder,
        "baselines": {name: _metrics(stage) for name, stage in baselines.items()},
        "methods": entries,
        "best_method": best,
        "wall_seconds": round(wall_seconds, 1),
        "stage_seconds": dict(stage_seconds),
        "stage_seconds_total": round(sum(stage_seconds.values()), 1),
        "machine": machine(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def comparison_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """Rows of the comparison table: baselines, then each method after STAR -> ADORE."""
    rows = []
    for name, metrics in report["baselines"].items():
        label = "BM25 (no training)" if name == "bm25" else "zero-shot base model"
        rows.append([label] + [_cell(metrics.get(k)) for k in HEADLINE] + ["-", "-", "-"])
    for method, entry in report["methods"].items():
        mining = entry["mining"]
        rows.append(
            [f"{method} negatives"]
            + [_cell(entry.get(k)) for k in HEADLINE]
            + [
                _cell(entry["star"].get("ndcg@10")),
                str(mining["queries"]),
                _cell(entry["hardness"]["negative_cosine_mean"]),
            ]
        )
    return rows


TABLE_HEADER = [
    "retriever",
    "nDCG@10",
    "Recall@100",
    "P@10",
    "MRR@10",
    "nDCG@10 after STAR",
    "queries with a negative",
    "mean negative cosine",
]


def markdown(report: Mapping[str, Any]) -> str:
    header = "| " + " | ".join(TABLE_HEADER) + " |"
    rule = "| --- | " + " | ".join("---:" for _ in TABLE_HEADER[1:]) + " |"
    table = "\n".join("| " + " | ".join(r) + " |" for r in comparison_rows(report))
    budget = report["budget"]
    trims = "\n".join(f"- {t}" for t in report["trims"]) or "- nothing"
    ce = report.get("cross_encoder")
    if isinstance(ce, Mapping):
        cross_encoder = (
            f"The cross-encoder was trained here: listwise loss {ce['first_loss']} -> "
            f"{ce['final_loss']} (chance {ce['chance_loss']})."
        )
    else:
        cross_encoder = f"Cross-encoder: `{ce}`." if ce else ""
    return f"""# Which negatives help on `{report["dataset"]}`?

Base model {report["model"]}; profile `{report["profile"]}`; every method mined
{budget["negatives_per_query"]} negatives for the same {budget["train_queries"]} training queries
and trained the same recipe (STAR, then ADORE from the STAR model:
{budget["optimizer_steps"]} optimizer steps). Scores are on the test split; "mean negative
cosine" is the base model's similarity of each query to its negatives (higher is harder).

{header}
{rule}
{table}

{cross_encoder}
Best: **{report["best_method"]}**. Wall time {report["wall_seconds"]:.0f} s for this invocation
({report["stage_seconds_total"]:.0f} s of recorded stages).

## What the `{report["profile"]}` profile trims

{trims}

## Plots

![metrics](metrics.png)

![scores](scores.png)

![training curves](curves.png)
"""


def write_report(
    output: Path,
    report: Mapping[str, Any],
    methods: Mapping[str, Mapping[str, Stage]],
    scores: Stage,
) -> dict[str, Path]:
    """Write report.json, report.md and the plots into ``output``; returns their paths."""
    curves = {m: training_curves(runs) for m, runs in methods.items()}
    files = {
        "metrics": plot_metrics(output / "metrics.png", report),
        "scores": plot_scores(output / "scores.png", scores),
        "curves": plot_curves(output / "curves.png", curves),
    }
    full = dict(report) | {"curves": curves}
    write_text_atomic(output / REPORT_JSON, json.dumps(full, indent=2) + "\n")
    write_text_atomic(output / REPORT_MD, markdown(report))
    return files | {"report_json": output / REPORT_JSON, "report_md": output / REPORT_MD}
