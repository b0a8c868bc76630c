"""Paired comparisons of retrieval runs on per-query scores, as a results table needs them.

Two systems scored on the same queries are compared by the per-query differences
``d_q = a_q - b_q`` (each score may itself be a mean over training seeds):

- the mean difference ``mean(d)``, with the 95% confidence interval of Student's t on the
  differences (``mean(d) ± t_{0.975, n-1} · sd(d) / sqrt(n)``);
- the two-sided paired t-test p-value (``scipy.stats.ttest_rel``), the test IR evaluations use
  most (Smucker, Allan & Carterette, "A Comparison of Statistical Significance Tests for
  Information Retrieval Evaluation", CIKM 2007, find it agrees with the randomization test);
- p-values of a family of comparisons are adjusted with Holm's step-down method
  (``statsmodels``' ``multipletests``), which controls the family-wise error rate.

The statistics come from scipy and statsmodels; this module only lines the queries up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05


@dataclass(frozen=True)
class PairedComparison:
    """``a`` minus ``b`` over the queries both were scored on."""

    a: str
    b: str
    queries: int
    delta: float  # mean per-query difference
    ci95: tuple[float, float]
    p_value: float  # two-sided paired t-test
    p_holm: float | None = None  # set by :func:`holm`

    def significant(self, alpha: float = ALPHA) -> bool:
        p = self.p_holm if self.p_holm is not None else self.p_value
        return p < alpha

    def to_json(self) -> dict[str, object]:
        return {
            "vs": self.b,
            "queries": self.queries,
            "delta": round(self.delta, 4),
            "ci95": [round(self.ci95[0], 4), round(self.ci95[1], 4)],
            "p": round(self.p_value, 6),
            "p_holm": None if self.p_holm is None else round(self.p_holm, 6),
        }


def paired_comparison(
    a_name: str, a: Mapping[str, float], b_name: str, b: Mapping[str, float]
) -> PairedComparison:
    """Compare per-query scores ``a`` and ``b`` (query id -> score) on their common queries."""
    from scipy import stats

    queries = sorted(set(a) & set(b))
    if len(queries) < 2:
        raise ValueError(f"{a_name} vs {b_name}: fewer than 2 common queries")
    x = np.array([a[q] for q in queries], dtype=np.float64)  # (n,)
    y = np.array([b[q] for q in queries], dtype=np.float64)  # (n,)
    diff = x - y
    delta = float(diff.mean())
    if np.allclose(diff, diff[0]):  # no variance: t is undefined
        p = 1.0 if abs(delta) < 1e-12 else 0.0
        return PairedComparison(a_name, b_name, len(queries), delta, (delta, delta), p)
    result = stats.ttest_rel(x, y)
    interval = result.confidence_interval(0.95)
    return PairedComparison(
        a_name,
        b_name,
        len(queries),
        delta,
        (float(interval.low), float(interval.high)),
        float(result.pvalue),
    )


def holm(comparisons: Sequence[PairedComparison]) -> list[PairedComparison]:
    """The same comparisons with Holm-adjusted p-values over the whole family."""
    from dataclasses import replace

    from statsmodels.stats.multitest import multipletests

    if not comparisons:
        return []
    adjusted = multipletests([c.p_value for c in comparisons], method="holm")[1]
    return [replace(c, p_holm=float(p)) for c, p in zip(comparisons, adjusted, strict=True)]


def mean_over_seeds(runs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per-query scores averaged over repeated runs (every run must score the same queries)."""
    if not runs:
        return {}
    queries = set(runs[0])
    if any(set(run) != queries for run in runs[1:]):
        raise ValueError("repeated runs scored different queries")
    return {q: float(np.mean([run[q] for run in runs])) for q in sorted(queries)}
