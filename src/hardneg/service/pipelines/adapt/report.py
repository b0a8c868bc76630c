"""The adapt run's report, every figure from this run's own stages, and the do-no-harm decision.

The decision compares validation nDCG@10 (generated queries held out by passage) of the chosen
checkpoint with the base model's, measured by the same evaluator before training: the adapted
model is returned only when it is higher by more than ``min_gain``; otherwise the base model is,
and the report says so plainly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardneg.service.pipelines.adapt.spec import AdaptSpec
from hardneg.service.pipelines.adapt.stages import GeneratedQueries, MinedNegatives, TeacherScores
from hardneg.service.pipelines.experiment.stages import Trained

METRIC = "ndcg@10"


def validation_curve(model_folder: Path) -> list[dict[str, float]]:
    """(phase, step, nDCG@10) of every validation the trainer recorded (``metrics.jsonl``):
    ``before`` is the base model, ``step`` the checkpoints, ``after`` the chosen one."""
    path = model_folder / "metrics.jsonl"
    if not path.is_file():
        return []
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [
        {"phase": e.get("phase"), "step": e["step"], METRIC: round(float(e[METRIC]), 4)}
        for e in events
        if e.get("event") == "eval" and METRIC in e
    ]


def decide(
    summary: Mapping[str, Any], trained_folder: str, base_model: str, min_gain: float
) -> dict[str, Any]:
    """Which model to return, with the validation figures behind the choice."""
    before = (summary.get("metrics_before") or {}).get(METRIC)
    after = (summary.get("metrics_after") or {}).get(METRIC)
    best_step = summary.get("best_step") or summary.get("steps")
    if before is None or after is None:
        adapted = False
        reason = "no validation score was measured, so the base model is returned"
    elif after > before + min_gain:
        adapted = True
        reason = (
            f"the checkpoint at step {best_step} beats the base model on validation "
            f"(nDCG@10 {after:.4f} vs {before:.4f})"
        )
    else:
        adapted = False
        reason = (
            f"no checkpoint beat the base model on validation (best nDCG@10 {after:.4f} at "
            f"step {best_step} vs the base model's {before:.4f}"
            + (f", needed +{min_gain}" if min_gain else "")
            + "): the base model is returned unchanged"
        )
    return {
        "adapted": adapted,
        "model": trained_folder if adapted else base_model,
        "decision": reason,
        "validation": {
            "base": None if before is None else round(float(before), 4),
            "chosen_checkpoint": None if after is None else round(float(after), 4),
            "chosen_step": best_step,
        },
    }


@dataclass(frozen=True)
class AdaptStages:
    """Every recorded stage of one adapt run."""

    queries: GeneratedQueries
    negatives: MinedNegatives
    teacher: TeacherScores
    train: Trained


def trims(stages: AdaptStages) -> str:
    """What this run did with its budget, in words, from its own counts."""
    queries, total, kept = stages.queries, stages.queries.total, stages.queries.kept
    return (
        f"{queries.passages} passages spread over the corpus, {total} generations, "
        f"{kept} kept ({kept / max(total, 1):.1%}) as {queries.queries} queries: "
        f"{queries.train_queries} train on {queries.train_passages} passages, "
        f"{queries.val_queries} validate on {queries.val_passages} others; "
        f"teacher {stages.teacher.teacher['scorer']} on {stages.teacher.rows} training queries; "
        f"MarginMSE for {stages.train.summary.get('steps')} steps"
    )


def build_report(
    spec: AdaptSpec,
    data: str,
    base_model: str,
    stages: AdaptStages,
    stage_seconds: Mapping[str, float],
    wall_seconds: float,
) -> dict[str, Any]:
    queries, summary = stages.queries, stages.train.summary
    total, kept = queries.total, queries.kept
    mined = stages.negatives.stats
    return {
        "request": spec.describe(data),
        "base_model": base_model,
        **decide(summary, stages.train.output, base_model, spec.train.min_gain),
        "queries": {
            "passages": queries.passages,
            "generated": total,
            "kept": kept,
            "kept_share": round(kept / max(total, 1), 4),
            "queries": queries.queries,
            "train_queries": queries.train_queries,
            "val_queries": queries.val_queries,
            "dropped": queries.report["dropped"],
            "dropped_fraction": queries.report["dropped_fraction"],
            "examples": queries.report["examples"],
            "prompt": queries.prompt,
            "generation": queries.generation,
        },
        "negatives": {key: mined.get(key) for key in ("queries", "negatives", "skipped")}
        | {"method": spec.train.negatives_method},
        "teacher": stages.teacher.teacher,
        "training": {
            "trainer": summary.get("trainer"),
            "steps": summary.get("steps"),
            "best_step": summary.get("best_step"),
            "validation_curve": validation_curve(Path(stages.train.output)),
            "seconds": summary.get("seconds"),
        },
        "trims": trims(stages),
        "stage_seconds": dict(stage_seconds),
        "wall_seconds": round(wall_seconds, 1),
    }
