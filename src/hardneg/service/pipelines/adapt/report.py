"""The adapt run's report, every figure from this run's own stages, and the do-no-harm decision.

The decision compares validation nDCG@10 (generated queries held out by passage) of the chosen
checkpoint with the base model's, measured by the same evaluator before training: the adapted
model is returned only when it is higher by more than ``min_gain``; otherwise the base model is,
and the report says so plainly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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


def trims(queries: Mapping[str, Any], train: Mapping[str, Any], teacher: Mapping[str, Any]) -> str:
    """What this run did with its budget, in words, from its own counts."""
    report = queries["report"]
    total, kept = int(report["total"]), int(report["kept"])
    summary = train["summary"]
    return (
        f"{queries['passages']} passages spread over the corpus, {total} generations, "
        f"{kept} kept ({kept / max(total, 1):.0%}) as {queries['queries']} queries: "
        f"{queries['train_queries']} train on {queries['train_passages']} passages, "
        f"{queries['val_queries']} validate on {queries['val_passages']} others; "
        f"teacher {teacher['teacher']['scorer']} on {teacher['rows']} training queries; "
        f"MarginMSE for {summary.get('steps')} steps"
    )


def build_report(
    request: Mapping[str, Any],
    base_model: str,
    stages: Mapping[str, Mapping[str, Any]],
    min_gain: float,
    stage_seconds: Mapping[str, float],
    wall_seconds: float,
) -> dict[str, Any]:
    queries, train, teacher = stages["queries"], stages["train"], stages["teacher"]
    summary = train["summary"]
    report = queries["report"]
    total, kept = int(report["total"]), int(report["kept"])
    mined = stages["negatives"]["stats"]
    return {
        "request": dict(request),
        "base_model": base_model,
        **decide(summary, train["output"], base_model, min_gain),
        "queries": {
            "passages": queries["passages"],
            "generated": total,
            "kept": kept,
            "kept_share": round(kept / max(total, 1), 4),
            "queries": queries["queries"],
            "train_queries": queries["train_queries"],
            "val_queries": queries["val_queries"],
            "dropped": report["dropped"],
            "dropped_fraction": report["dropped_fraction"],
            "examples": report["examples"],
            "prompt": queries["prompt"],
            "generation": queries["generation"],
        },
        "negatives": {key: mined.get(key) for key in ("queries", "negatives", "skipped")}
        | {"method": request["spec"]["train"]["negatives_method"]},
        "teacher": teacher["teacher"],
        "training": {
            "trainer": summary.get("trainer"),
            "steps": summary.get("steps"),
            "best_step": summary.get("best_step"),
            "validation_curve": validation_curve(Path(train["output"])),
            "seconds": summary.get("seconds"),
        },
        "trims": trims(queries, train, teacher),
        "stage_seconds": dict(stage_seconds),
        "wall_seconds": round(wall_seconds, 1),
    }
