"""The experiment's PNG plots (matplotlib's Agg canvas, no pyplot global state): metric bars per
arm, base-model score histograms of positives vs negatives per source, training curves."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hardneg.core.atomic import atomic_path
from hardneg.service.pipelines.experiment.stages import Distributions, Trained

BAR_METRICS = ("ndcg@10", "recall@100", "p@10")
METRICS_FILE = "metrics.jsonl"  # hardneg.trainers.loop writes one per training run
Curve = dict[str, list[list[float]]]  # {"loss": [[step, value], ...], "ndcg@10": [...]}


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as temp:
        figure.savefig(temp, format="png")
    return path


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def plot_metrics(path: Path, report: Mapping[str, Any]) -> Path:
    """One panel per metric: a bar per baseline and per arm (comparison stage, mean over seeds,
    with the seeds' standard deviation as the error bar)."""
    baselines, arms = report["baselines"], report["methods"]
    labels = list(baselines) + list(arms)
    figure = _figure(4.2 * len(BAR_METRICS), 4)
    colors = ["tab:gray"] * len(baselines) + [
        "tab:orange" if arm == "none" else "tab:blue" for arm in arms
    ]
    for i, metric in enumerate(BAR_METRICS):
        values = [float(baselines[b].get(metric) or 0.0) for b in baselines] + [
            float(arms[a][metric]["mean"]) for a in arms
        ]
        errors = [0.0] * len(baselines) + [float(arms[a][metric]["std"]) for a in arms]
        axes = figure.add_subplot(1, len(BAR_METRICS), i + 1)
        axes.bar(range(len(labels)), values, yerr=errors, color=colors, capsize=3)
        axes.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        low = min(values) if values else 0.0
        axes.set_ylim(max(0.0, low - 0.1 * max(low, 1e-9)), None)
        axes.set_title(f"{metric} (test)")
        for x, v in enumerate(values):
            axes.text(x, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    return _save(figure, path)


def plot_scores(path: Path, scores: Distributions) -> Path:
    """Per method, overlaid histograms of the base model's positive and negative cosines."""
    methods = scores.methods
    figure = _figure(4 * max(1, len(methods)), 3.6)
    all_values = [v for m in methods.values() for part in m.values() for v in part]
    low, high = (min(all_values), max(all_values)) if all_values else (0.0, 1.0)
    bins = [float(b) for b in np.linspace(low, high if high > low else low + 1.0, 31)]
    for i, (method, parts) in enumerate(methods.items()):
        axes = figure.add_subplot(1, len(methods), i + 1)
        for name, color in (("positive", "tab:green"), ("negative", "tab:red")):
            label = f"{name} (n={len(parts[name])})"
            axes.hist(parts[name], bins=bins, alpha=0.55, color=color, label=label)
        axes.set_title(f"{method} negatives")
        axes.set_xlabel(f"{scores.similarity} (base model)")
        axes.legend(fontsize=7)
    return _save(figure, path)


def read_history(folder: Path) -> list[dict[str, Any]]:
    """The entries of a training run's ``metrics.jsonl`` (none when it has not written one)."""
    path = folder / METRICS_FILE
    lines = path.read_text().splitlines() if path.is_file() else []
    return [json.loads(line) for line in lines if line.strip()]


def training_curves(runs: Mapping[str, Trained]) -> Curve:
    """Loss and validation nDCG@10 by optimizer step, the comparison stage then ADORE on one
    step axis (the test split is never scored while training)."""
    curve: Curve = {"loss": [], "ndcg@10": [], "adore_from_step": []}
    offset = 0
    for stage in ("star", "star_adore"):
        for entry in read_history(Path(runs[stage].output)):
            step = offset + int(entry.get("step", 0))
            if entry.get("event") == "train":
                curve["loss"].append([step, float(entry["loss"])])
            elif entry.get("event") == "eval" and "ndcg@10" in entry:
                curve["ndcg@10"].append([step, float(entry["ndcg@10"])])
        if stage == "star":
            offset = runs[stage].steps
            curve["adore_from_step"] = [[offset, 0.0]]
    return curve


def plot_curves(
    path: Path, curves: Mapping[str, Curve], labels: Mapping[str, str] | None = None
) -> Path:
    """Training loss (left) and validation nDCG@10 (right) per arm; the dotted line starts
    ADORE. ``labels`` renames arms whose comparison stage has another loss (gpl's MarginMSE);
    the loss axis is then logarithmic, the losses' scales differing."""
    labels = labels or {}
    figure = _figure(11, 4)
    loss_axes = figure.add_subplot(1, 2, 1)
    ndcg_axes = figure.add_subplot(1, 2, 2)
    for method, curve in curves.items():
        label = labels.get(method, method)
        if curve["loss"]:
            steps, values = zip(*curve["loss"], strict=True)
            loss_axes.plot(steps, values, label=label)
        if curve["ndcg@10"]:
            steps, values = zip(*curve["ndcg@10"], strict=True)
            ndcg_axes.plot(steps, values, marker="o", label=label)
    if labels:
        loss_axes.set_yscale("log")
    for axes in (loss_axes, ndcg_axes):
        for method_curve in curves.values():
            for start, _ in method_curve["adore_from_step"][:1]:
                axes.axvline(start, color="gray", linestyle=":")
        axes.set_xlabel("optimizer step (comparison stage, then ADORE)")
        if axes.get_legend_handles_labels()[1]:  # a run without curves has nothing to name
            axes.legend(fontsize=8)
    loss_axes.set_title("training loss (log scale)" if labels else "training loss")
    ndcg_axes.set_title("validation nDCG@10")
    return _save(figure, path)
