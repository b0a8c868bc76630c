from __future__ import annotations

import copy
import math

import pytest

from hardneg.core.metrics import METRIC_NAMES, evaluate

QRELS = {"q1": {"a": 1, "b": 1}, "q2": {"c": 2, "d": 1}, "q3": {"e": 1}}
RUN = {
    "q1": {"x": 0.9, "a": 0.8, "y": 0.7, "b": 0.6},  # relevant at ranks 2 and 4
    "q2": {"d": 0.5, "c": 0.4},  # grade 1 first, grade 2 second
}  # q3 retrieved nothing: it must count as zero, not vanish from the mean


def _log2(x: float) -> float:
    return math.log(x, 2)


def test_hand_computed_values() -> None:
    result = evaluate(QRELS, RUN)
    q1, q2, q3 = (result.per_query[q] for q in ("q1", "q2", "q3"))
    ndcg_q1 = (1 / _log2(3) + 1 / _log2(5)) / (1 + 1 / _log2(3))
    ndcg_q2 = (1 + 2 / _log2(3)) / (2 + 1 / _log2(3))
    assert q1["ndcg@10"] == pytest.approx(ndcg_q1, abs=1e-4)
    assert q2["ndcg@10"] == pytest.approx(ndcg_q2, abs=1e-4)
    assert (q1["mrr@10"], q2["mrr@10"]) == (pytest.approx(0.5), pytest.approx(1.0))
    assert (q1["p@10"], q2["p@10"]) == (pytest.approx(0.2), pytest.approx(0.2))
    assert (q1["recall@100"], q2["recall@100"]) == (1.0, 1.0)
    assert q1["map@100"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert q2["map@100"] == pytest.approx(1.0)
    assert all(value == 0.0 for value in q3.values())
    assert result.num_queries == 3
    assert result.mean["ndcg@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 3, abs=1e-4)
    assert set(result.mean) == set(METRIC_NAMES)


def test_mrr_is_cut_at_ten() -> None:
    run = {"q": {f"n{i}": 100.0 - i for i in range(10)} | {"rel": 1.0}}
    result = evaluate({"q": {"rel": 1}}, run)
    assert result.per_query["q"]["mrr@10"] == 0.0
    assert result.per_query["q"]["recall@100"] == 1.0


def test_identical_ids_are_ignored_by_default() -> None:
    qrels = {"q": {"d": 1}}
    run = {"q": {"q": 2.0, "d": 1.0}}
    assert evaluate(qrels, run).per_query["q"]["mrr@10"] == 1.0
    assert evaluate(qrels, run, ignore_identical_ids=False).per_query["q"]["mrr@10"] == 0.5


def test_inputs_are_not_mutated() -> None:
    qrels, run = copy.deepcopy(QRELS), copy.deepcopy(RUN)
    evaluate(qrels, run)
    assert qrels == QRELS and run == RUN


def test_unknown_metric() -> None:
    with pytest.raises(ValueError, match="unknown metrics"):
        evaluate(QRELS, RUN, metrics=("ndcg@11",))
