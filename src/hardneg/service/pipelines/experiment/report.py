"""The experiment's report: ``report.json`` (numbers), ``report.md`` (tables, the verdict, what
each split did, what the profile trims) and the plots of :mod:`.plots`."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.core.atomic import write_text_atomic
from hardneg.core.significance import ALPHA
from hardneg.service.pipelines.experiment.comparison import (
    METRIC,
    Verdict,
    compare,
    per_query,
    summarise,
)
from hardneg.service.pipelines.experiment.data import ExperimentData
from hardneg.service.pipelines.experiment.plots import (
    plot_curves,
    plot_metrics,
    plot_scores,
    training_curves,
)
from hardneg.service.pipelines.experiment.profiles import (
    CONTROL,
    GPL,
    LLM_PROMPTS,
    NEGATIVES_OF,
    Profile,
)
from hardneg.service.pipelines.experiment.request import ExperimentSpec
from hardneg.service.pipelines.experiment.stages import Distributions, Mined, Runs, Scored, Trained
from hardneg.service.pipelines.experiment.trims import (
    provenance_text,
    split_roles_text,
    stages_text,
    trims,
)

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
STAGES = ("star", "star_adore")  # the comparison stage (STAR or MarginMSE), then ADORE


def _rounded(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in metrics.items()}


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


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


def _mining(stage: Mined | None) -> dict[str, Any] | None:
    if stage is None:
        return None
    stats = stage.stats
    per_query_counts = stats.get("negatives_per_query") or {}
    return {
        "queries_with_negatives": stats.get("rows"),
        "negatives": stats.get("negatives"),
        "negatives_per_query": per_query_counts.get("mean"),
        "skipped": (stats.get("queries") or {}).get("skipped"),
        "seconds": stage.stage_seconds,
    }


def _verdicts(tested: Mapping[str, Mapping[int, Mapping[str, Scored]]]) -> dict[str, Verdict]:
    """Per stage: the verdict on per-query scores averaged over seeds."""
    verdicts = {}
    for stage in STAGES:
        scores = {
            arm: per_query({seed: runs[stage] for seed, runs in seeds.items()})
            for arm, seeds in tested.items()
        }
        verdicts[stage] = compare(scores)
    return verdicts


def arm_entry(
    arm: str,
    runs: Runs,
    verdicts: Mapping[str, Verdict],
    hardness: Mapping[str, list[float]],
    profile: Profile,
) -> dict[str, Any]:
    tested = runs.tested[arm]
    first = summarise({seed: stages["star"] for seed, stages in tested.items()})
    adore = summarise({seed: stages["star_adore"] for seed, stages in tested.items()})
    comparison, second = verdicts["star"], verdicts["star_adore"]

    def versus(verdict: Verdict, table: str) -> dict[str, Any] | None:
        found = getattr(verdict, table).get(arm)
        return None if found is None else found.to_json()

    trained = runs.trained[arm]
    seconds = sum(stage.stage_seconds for stages in trained.values() for stage in stages.values())
    arm_info = runs.arms[arm]
    return first | {
        "stage": "comparison",
        "comparison_stage": profile.stage_one_name(arm),
        "queries_trained": arm_info.queries_trained,
        "negatives_histogram": arm_info.negatives_histogram,
        "vs_control": versus(comparison, "vs_control"),
        "vs_best": versus(comparison, "vs_best"),
        "adore": adore
        | {
            "vs_control": versus(second, "vs_control"),
            "vs_best": versus(second, "vs_best"),
        },
        "prompt": LLM_PROMPTS.get(arm),
        "negatives_from": NEGATIVES_OF.get(arm),  # mined (and probed) once, for both arms
        "teacher": arm_info.teacher,
        "mining": _mining(runs.mined.get(arm)),
        "hardness": {
            "positive_cosine_mean": _mean(hardness.get("positive", [])),
            "negative_cosine_mean": _mean(hardness.get("negative", [])),
        },
        "train_seconds": round(seconds, 1),
    }


def build_report(
    request: ExperimentSpec,
    data: ExperimentData,
    baselines: Mapping[str, Scored],
    runs: Runs,
    scores: Distributions,
    wall_seconds: float,
    stage_seconds: Mapping[str, float],
    reranker: Mapping[str, Any] | None = None,
    numerics: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The report's JSON: the settings, the baselines, every arm's entry and the verdicts."""
    profile = request.recipe
    verdicts = _verdicts(runs.tested)
    entries = {
        arm: arm_entry(arm, runs, verdicts, scores.methods.get(arm, {}), profile)
        for arm in runs.tested
    }
    seeds = request.training_seeds
    return {
        "dataset": request.data,
        "model": request.model or "all-MiniLM-L6-v2 (packaged)",
        "profile": profile.name,
        "queries": "generated" if data.generated else "human",
        "stages": stages_text(profile, runs.tested),
        "splits": split_roles_text(data),
        "trims": trims(request, data),
        "settings": profile.to_dict()
        | {"seed": request.seed, "training_seeds": seeds, "llm": request.llm.describe()}
        | {"numerics": dict(numerics or {})},
        "budget": {
            "train_queries": data.train_queries,
            "negatives_per_query": profile.num_negatives,
            "optimizer_steps": {"comparison": profile.star_steps, "adore": profile.adore_steps},
            "seeds": len(seeds),
            "generated_training_queries": data.generated,
        },
        "significance": {
            "metric": METRIC,
            "test": "two-sided paired t-test on per-query scores averaged over seeds",
            "interval": "95% t-interval of the mean per-query difference",
            "correction": "Holm over every arm vs none and the top arm vs every other arm",
            "alpha": 0.05,
        },
        "cross_encoder": dict(reranker) if reranker else request.cross_encoder,
        "baselines": {name: _rounded(stage.metrics) for name, stage in baselines.items()},
        "methods": entries,
        **verdicts["star"].to_json(),
        "adore_verdict": verdicts["star_adore"].to_json(),
        "false_negative_probe": {m: probe.to_json() for m, probe in runs.probes.items()},
        "wall_seconds": round(wall_seconds, 1),
        "stage_seconds": dict(stage_seconds),
        "stage_seconds_total": round(sum(stage_seconds.values()), 1),
        "machine": machine(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _pm(summary: Mapping[str, Any] | None) -> str:
    return "-" if not summary else f"{summary['mean']:.3f}±{summary['std']:.3f}"


def _delta(comparison: Mapping[str, Any] | None) -> str:
    """The mean difference and the half-width of its (symmetric) 95% t-interval."""
    if not comparison:
        return "-"
    low, high = comparison["ci95"]
    return f"{comparison['delta']:+.3f}±{(high - low) / 2:.3f}"


def _p(comparison: Mapping[str, Any] | None) -> str:
    if not comparison:
        return "-"
    p = float(comparison["p_holm"])
    return "<0.001" if p < 0.001 else f"{p:.3f}"  # never "0.000": a p-value is not zero


TABLE_HEADER = ["arm", "nDCG@10", "Δ none ±CI95", "p Holm", "R@100", "+ADORE"]


def comparison_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """Rows of the comparison table (narrow enough for 80 columns): baselines, then arms."""
    rows = []
    for name, metrics in report["baselines"].items():
        label = "BM25" if name == "bm25" else "zero-shot"
        rows.append([label, _cell(metrics.get("ndcg@10")), "-", "-",
                     _cell(metrics.get("recall@100")), "-"])  # fmt: skip
    for arm, entry in report["methods"].items():
        rows.append(
            [
                arm,
                _pm(entry["ndcg@10"]),
                _delta(entry["vs_control"]),
                _p(entry["vs_control"]),
                f"{entry['recall@100']['mean']:.3f}",
                _pm(entry["adore"]["ndcg@10"]),
            ]
        )
    return rows


def verdict_sentence(report: Mapping[str, Any]) -> str:
    best = report["best_method"]
    if best:
        return (
            f"**{best}** is significantly better than every other arm "
            f"(Holm-corrected paired t-tests, α = 0.05, on {METRIC})."
        )
    tied = ", ".join(report["indistinguishable"])
    if report["top_arm"] == CONTROL:
        others = ", ".join(a for a in report["indistinguishable"] if a != CONTROL)
        worse = [
            arm
            for arm, entry in report.get("methods", {}).items()
            if (c := entry.get("vs_control")) and c["delta"] < 0 and c["p_holm"] < ALPHA
        ]
        standing = (
            f"is on top; {others} cannot be told apart from it"
            + (f", and {', '.join(worse)} are significantly worse" if worse else "")
            if others
            else "is significantly better than every source"
        )
        return (
            f"No source helps: the control arm ({CONTROL}, in-batch negatives only) {standing} "
            f"(Holm-corrected paired t-tests, α = 0.05, on {METRIC})."
        )
    return (
        f"No arm is significantly better than every other: the top arm "
        f"({report['top_arm']}) cannot be told apart from {tied.split(', ', 1)[-1] or 'none'} "
        f"(α = 0.05, Holm-corrected, on {METRIC})."
        if len(report["indistinguishable"]) > 1
        else f"The top arm is {report['top_arm']}."
    )


def numerics_sentence(report: Mapping[str, Any]) -> str:
    """Which arithmetic ran: training autocast and the encoder backend (empty when unknown)."""
    numerics = report["settings"].get("numerics") or {}
    if not numerics:
        return ""
    return (
        f"\nOn {numerics['device']}: training steps in {numerics['training_precision']} "
        f"(losses in fp32); documents and queries encoded by `{numerics['encoder_backend']}`."
    )


def markdown(report: Mapping[str, Any]) -> str:
    header = "| " + " | ".join(TABLE_HEADER) + " |"
    rule = "| --- | " + " | ".join("---:" for _ in TABLE_HEADER[1:]) + " |"
    table = "\n".join("| " + " | ".join(r) + " |" for r in comparison_rows(report))
    budget, stages = report["budget"], report["stages"]
    steps, recorded = budget["optimizer_steps"], report["stage_seconds_total"]
    trims_text = "\n".join(f"- {t}" for t in report["trims"]) or "- nothing"
    splits = "\n".join(f"- `{name}`: {text}" for name, text in report["splits"].items())
    probe = (
        "\n".join(
            (
                f"- {method}: {info.get('returned')} of {info['hidden_positives']} hidden "
                f"positives came back as negatives (rate {info['rate']})"
                + (f"; {info['note']}" if info.get("note") else "")
                if info.get("returned") is not None or not info.get("note")
                else f"- {method}: does not apply ({info['note']})"
            )
            for method, info in report["false_negative_probe"].items()
        )
        or "- no source mined corpus documents"
    )
    histograms = "\n".join(
        f"- {arm}: {entry['queries_trained']} queries; hard negatives per query "
        + ", ".join(f"{k}: {v}" for k, v in entry["negatives_histogram"].items())
        + provenance_text(entry)
        for arm, entry in report["methods"].items()
    )
    ce = report.get("cross_encoder")
    cross_encoder = ""
    if isinstance(ce, Mapping):
        cross_encoder = (
            f"The cross-encoder was trained here: listwise loss {ce['first_loss']} -> "
            f"{ce['final_loss']} (chance {ce['chance_loss']})."
        )
    elif ce:
        cross_encoder = f"Cross-encoder: `{ce}`."
    return f"""# Which negatives help on `{report["dataset"]}`?

Base model {report["model"]}; profile `{report["profile"]}`; {report["queries"]} training
queries. Every arm trained on the same {budget["train_queries"]} queries in the same order
({budget["negatives_per_query"]} mined negative(s) asked for per query), {budget["seeds"]} training
seeds each. Scores are on the test split, mean ± std over seeds.{numerics_sentence(report)}

- **nDCG@10** (the comparison): {stages["comparison"]}, {steps["comparison"]} steps.
- **+ADORE** (nDCG@10): {stages["second"]}, {steps["adore"]} more steps.
- **Δ none ±CI95**: mean per-query difference from the control arm with its 95% interval;
  **p Holm**: {report["significance"]["test"]}, Holm-corrected.

{header}
{rule}
{table}

{verdict_sentence(report)}

## Training data per arm

{histograms}

## False-negative probe

One judged positive per training query with at least two was hidden from the miner; how often it
came back as a negative:

{probe}

## Which split did what

{splits}

{cross_encoder}
Wall time {report["wall_seconds"]:.0f} s for this invocation ({recorded:.0f} s of recorded
stages; training runs in parallel processes each count their own).

## What the `{report["profile"]}` profile trims

{trims_text}

## Plots

![metrics](metrics.png)

![scores](scores.png)

![training curves](curves.png)
"""


def write_report(
    output: Path,
    report: Mapping[str, Any],
    trained: Mapping[str, Mapping[int, Mapping[str, Trained]]],
    scores: Distributions,
) -> dict[str, Path]:
    """Write report.json, report.md and the plots into ``output``; returns their paths."""
    curves = {arm: training_curves(seeds[min(seeds)]) for arm, seeds in trained.items()}
    labels = {GPL: f"{GPL} (MarginMSE, then ADORE)"} if GPL in curves else {}
    files = {
        "metrics": plot_metrics(output / "metrics.png", report),
        "scores": plot_scores(output / "scores.png", scores),
        "curves": plot_curves(output / "curves.png", curves, labels),
    }
    full = dict(report) | {"curves": curves}
    write_text_atomic(output / REPORT_JSON, json.dumps(full, indent=2) + "\n")
    write_text_atomic(output / REPORT_MD, markdown(report))
    return files | {"report_json": output / REPORT_JSON, "report_md": output / REPORT_MD}
