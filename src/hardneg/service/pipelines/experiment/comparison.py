"""Which arm is best, if any: repeats summarised, paired tests, Holm correction, the verdict.

Per arm and stage, each training seed's test run gives per-query scores. For the tests every
query's score is first averaged over the seeds (one paired observation per query and arm). The
family of comparisons is every arm against the control ``none`` and the top arm (highest mean
nDCG@10) against every other arm; their p-values are Holm-corrected together
(:mod:`hardneg.core.significance`). An arm is **best** only when it is the top arm, is not the
control, and is significantly better (p_holm < 0.05, positive difference) than every other arm;
otherwise the report names the arms the top one cannot be told apart from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hardneg.core.significance import (
    ALPHA,
    PairedComparison,
    holm,
    mean_over_seeds,
    paired_comparison,
)
from hardneg.service.pipelines.experiment.profiles import CONTROL
from hardneg.service.pipelines.experiment.stages import Scored

METRIC = "ndcg@10"  # the metric the tests and the verdict are on
SUMMARISED = ("ndcg@10", "recall@100", "mrr@10", "p@10")


def over_seeds(values: list[float]) -> dict[str, Any]:
    """Mean and sample standard deviation over seeds, and the values themselves."""
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return {
        "mean": round(float(array.mean()), 4),
        "std": round(std, 4),
        "seeds": [round(float(v), 4) for v in values],
    }


def summarise(runs: Mapping[int, Scored]) -> dict[str, Any]:
    """``{metric: {mean, std, seeds}}`` over one arm-stage's test runs (seed -> scored stage)."""
    ordered = [runs[seed] for seed in sorted(runs)]
    return {m: over_seeds([r.metrics[m] for r in ordered]) for m in SUMMARISED}


def per_query(runs: Mapping[int, Scored], metric: str = METRIC) -> dict[str, float]:
    """Per-query ``metric`` averaged over the seeds."""
    return mean_over_seeds(
        [{q: v[metric] for q, v in runs[s].per_query.items()} for s in sorted(runs)]
    )


@dataclass(frozen=True)
class Verdict:
    top: str
    best: str | None  # None unless the significance condition holds
    indistinguishable: list[str]  # the top arm and every arm it is not significantly above
    vs_control: dict[str, PairedComparison]  # arm -> arm minus control
    vs_best: dict[str, PairedComparison]  # arm -> top minus arm (empty when the top is control)

    def to_json(self) -> dict[str, Any]:
        return {
            "top_arm": self.top,
            "best_method": self.best,
            "indistinguishable": self.indistinguishable,
        }


def compare(scores: Mapping[str, Mapping[str, float]], alpha: float = ALPHA) -> Verdict:
    """The verdict on per-query scores (arm -> query -> score, seeds already averaged)."""
    means = {arm: float(np.mean(list(values.values()))) for arm, values in scores.items()}
    top = max(means, key=lambda arm: means[arm])
    family: list[PairedComparison] = [
        paired_comparison(arm, scores[arm], CONTROL, scores[CONTROL])
        for arm in scores
        if arm != CONTROL
    ]
    if top != CONTROL:
        family += [
            paired_comparison(top, scores[top], arm, scores[arm])
            for arm in scores
            if arm not in (top, CONTROL)
        ]
    adjusted = holm(family)
    vs_control = {c.a: c for c in adjusted if c.b == CONTROL}
    vs_best = {c.b: c for c in adjusted if c.a == top and c.b != CONTROL}
    if top == CONTROL:  # the family is arm - control: the control is above where delta < 0
        beaten = {arm: c.significant(alpha) and c.delta < 0 for arm, c in vs_control.items()}
    else:
        vs_best[CONTROL] = vs_control[top]
        beaten = {arm: c.significant(alpha) and c.delta > 0 for arm, c in vs_best.items()}
    best = top if top != CONTROL and all(beaten.values()) else None
    tied = [top] + [arm for arm, ok in beaten.items() if not ok]
    return Verdict(top, best, tied, vs_control, vs_best)
