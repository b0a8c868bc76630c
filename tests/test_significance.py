"""The experiment's statistics against numbers worked out by hand, and the verdict's rules."""

from __future__ import annotations

import math

import pytest

from hardneg.core.significance import holm, mean_over_seeds, paired_comparison
from hardneg.service.pipelines.experiment.comparison import compare, over_seeds

A = {"q1": 0.5, "q2": 0.7, "q3": 0.9, "q4": 0.4}
B = {"q1": 0.4, "q2": 0.5, "q3": 0.9, "q4": 0.2}


def student_t_cdf_df3(t: float) -> float:
    """Student's t CDF for 3 degrees of freedom, in closed form."""
    x = t / math.sqrt(3)
    return 0.5 + (x / (1 + t * t / 3) + math.atan(x)) / math.pi


def test_paired_t_test_matches_the_hand_computation() -> None:
    # differences 0.1, 0.2, 0.0, 0.2: mean 0.125, sample sd sqrt(0.0275 / 3), n = 4
    mean = 0.125
    se = math.sqrt(0.0275 / 3) / 2
    t = mean / se  # 2.6112
    p = 2 * (1 - student_t_cdf_df3(t))  # 0.0797
    t_975 = 3.182446305284263  # Student's t quantile, df = 3 (tables)
    found = paired_comparison("a", A, "b", B)
    assert found.queries == 4
    assert found.delta == pytest.approx(mean)
    assert found.p_value == pytest.approx(p, abs=1e-9)
    assert found.ci95 == pytest.approx((mean - t_975 * se, mean + t_975 * se), abs=1e-9)
    assert found.p_value == pytest.approx(0.0797, abs=1e-4)
    # swapping the systems flips the sign, keeps the p-value
    flipped = paired_comparison("b", B, "a", A)
    assert flipped.delta == pytest.approx(-mean) and flipped.p_value == pytest.approx(p)


def test_only_common_queries_are_paired_and_identical_runs_are_no_difference() -> None:
    found = paired_comparison("a", A | {"q9": 1.0}, "b", B)
    assert found.queries == 4
    same = paired_comparison("a", A, "a2", dict(A))
    assert same.delta == 0 and same.p_value == 1.0 and same.ci95 == (0.0, 0.0)


def test_holm_adjustment_matches_the_step_down_by_hand() -> None:
    # sorted p: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04 -> monotone: 0.06
    comparisons = [
        paired_comparison("a", A, "b", B),
        paired_comparison("a", A, "c", B),
        paired_comparison("a", A, "d", B),
    ]
    from dataclasses import replace

    family = [replace(c, p_value=p) for c, p in zip(comparisons, (0.01, 0.04, 0.03), strict=True)]
    adjusted = [c.p_holm for c in holm(family)]
    assert adjusted == pytest.approx([0.03, 0.06, 0.06])


def test_seed_summaries_and_averages() -> None:
    summary = over_seeds([0.5, 0.7, 0.6])
    assert summary["mean"] == 0.6 and summary["std"] == pytest.approx(0.1)
    assert summary["seeds"] == [0.5, 0.7, 0.6]
    assert mean_over_seeds([{"q": 0.2}, {"q": 0.4}]) == {"q": pytest.approx(0.3)}
    with pytest.raises(ValueError, match="different queries"):
        mean_over_seeds([{"q": 0.2}, {"r": 0.4}])


def _scores(shift: float, n: int = 40, noise: float = 0.02) -> dict[str, float]:
    return {f"q{i}": 0.5 + shift + noise * ((i * 7919) % 13 - 6) / 6 for i in range(n)}


def test_an_arm_is_best_only_when_it_beats_every_other_significantly() -> None:
    clear = compare({"none": _scores(0.0), "bm25": _scores(0.1), "dense": _scores(0.05)})
    assert clear.top == "bm25" and clear.best == "bm25"
    assert clear.indistinguishable == ["bm25"]
    assert clear.vs_control["dense"].delta == pytest.approx(0.05)
    assert clear.vs_best["dense"].delta == pytest.approx(0.05)
    assert clear.vs_best["none"] is clear.vs_control["bm25"]

    # two arms equal (same scores): the top one cannot be told apart from the other
    tied = compare({"none": _scores(0.0), "bm25": _scores(0.1), "dense": _scores(0.1)})
    assert tied.best is None
    assert set(tied.indistinguishable) == {"bm25", "dense"}


def test_the_control_on_top_is_never_named_best() -> None:
    verdict = compare({"none": _scores(0.1), "bm25": _scores(0.0)})
    assert verdict.top == "none" and verdict.best is None
    assert verdict.indistinguishable == ["none"]
    assert verdict.vs_best == {}


def test_the_report_says_when_the_control_beats_every_source() -> None:
    from hardneg.service.pipelines.experiment.report import verdict_sentence

    beaten = {"best_method": None, "top_arm": "none", "indistinguishable": ["none"]}
    assert verdict_sentence(beaten).startswith("No source helps: the control arm (none")
    worse = {"delta": -0.03, "p_holm": 0.001}
    tied = {
        "best_method": None,
        "top_arm": "none",
        "indistinguishable": ["none", "llm"],
        "methods": {
            "llm": {"vs_control": {"delta": -0.01, "p_holm": 0.11}},
            "dense": {"vs_control": worse},
            "bm25": {"vs_control": {"delta": -0.02, "p_holm": 0.04}},
        },
    }
    sentence = verdict_sentence(tied)
    assert sentence.startswith("No source helps: the control arm (none")
    assert "llm cannot be told apart from it, and dense, bm25 are significantly worse" in sentence
    top_source = {"best_method": None, "top_arm": "llm", "indistinguishable": ["llm", "none"]}
    assert "the top arm (llm) cannot be told apart from none" in verdict_sentence(top_source)
