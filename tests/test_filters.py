"""Every shared filter on small inline pools, with answers worked out by hand.

Scores are binary fractions (0.5, 0.75, ...) so boundaries are exact in floating point.
"""

from __future__ import annotations

import numpy as np
import pytest

from hardneg.core.beir import BeirSplit, Corpus, Document
from hardneg.miners.candidates import CandidateLists
from hardneg.miners.filters import FilterConfig, normalize_text
from hardneg.miners.selection import select_from_candidates
from tests.filters_reference import (
    Candidate,
    QueryPool,
    score_rejection,
    select_negatives,
    text_key,
)


def make_pool(
    candidates: list[tuple[str, float]],
    positives: dict[str, float] | None = None,
    texts: dict[str, str] | None = None,
    query: str = "what do wolves eat",
    judged: tuple[str, ...] = (),
) -> QueryPool:
    """Candidates as (doc id, score); a doc's text is its id unless ``texts`` says otherwise."""
    texts = texts or {}
    positives = positives if positives is not None else {"pos": 1.0}
    return QueryPool.from_texts(
        "q1",
        query,
        {d: (s, texts.get(d, d)) for d, s in positives.items()},
        [Candidate.from_text(d, s, texts.get(d, d)) for d, s in candidates],
        frozenset(judged) | frozenset(positives),
    )


def ids(pool: QueryPool, config: FilterConfig) -> list[str]:
    return [c.doc_id for c in select_negatives(pool, config).negatives]


LADDER = [("a", 0.875), ("b", 0.75), ("c", 0.625), ("d", 0.5), ("e", 0.375), ("f", 0.25)]


def test_top_sampling_takes_the_best_in_score_order() -> None:
    shuffled = [LADDER[i] for i in (3, 0, 5, 1, 4, 2)]
    assert ids(make_pool(shuffled), FilterConfig(num_negatives=3)) == ["a", "b", "c"]


def test_positives_and_judged_documents_never_become_negatives() -> None:
    pool = make_pool(
        [("pos", 0.9375), ("zero-graded", 0.9), *LADDER],
        positives={"pos": 1.0},
        judged=("zero-graded",),
    )
    selection = select_negatives(pool, FilterConfig(num_negatives=2))
    assert [c.doc_id for c in selection.negatives] == ["a", "b"]
    assert selection.removed == {"positive": 1, "judged": 1}


def test_copies_of_a_positive_or_of_the_query_are_dropped_after_normalisation() -> None:
    texts = {
        "pos": "Wolves eat deer.",
        "copy": "  wolves   EAT deer. ",
        "echo": "What do  wolves eat",
        "a": "Deer eat grass.",
    }
    pool = make_pool([("copy", 0.9), ("echo", 0.8), ("a", 0.7)], texts=texts)
    selection = select_negatives(pool, FilterConfig(num_negatives=3))
    assert [c.doc_id for c in selection.negatives] == ["a"]
    assert selection.removed == {"positive_text": 1, "query_text": 1}


def test_dedupe_keeps_the_best_scored_copy_and_can_be_turned_off() -> None:
    texts = {"a": "Same text", "b": "same   TEXT", "c": "other"}
    pool = make_pool([("b", 0.5), ("a", 0.75), ("c", 0.25)], texts=texts)
    assert ids(pool, FilterConfig(num_negatives=3)) == ["a", "c"]
    assert ids(pool, FilterConfig(num_negatives=3, dedupe=False)) == ["a", "b", "c"]
    assert normalize_text(" A\tb\nC ") == "a b c"
    assert text_key("A b") == text_key(" a  B") != text_key("a c")


def test_range_max_limits_the_candidates_considered() -> None:
    pool = make_pool(LADDER)
    config = FilterConfig(num_negatives=2, range_max=3, sampling="random", seed=1)
    for seed in range(10):
        chosen = ids(pool, FilterConfig(num_negatives=2, range_max=3, sampling="random", seed=seed))
        assert set(chosen) <= {"a", "b", "c"}
    assert len(ids(pool, config)) == 2


def test_range_min_skips_the_best_survivors_after_the_score_filters() -> None:
    pool = make_pool(LADDER, positives={"pos": 0.75})
    # positive 0.75, absolute margin 0: a (0.875) goes; survivors b, c, d, e, f
    # (b ties the positive: 0.75 + 0 > 0.75 is false). range_min=2 then skips b and c.
    config = FilterConfig(num_negatives=2, range_min=2, absolute_margin=0.0)
    selection = select_negatives(pool, config)
    assert [c.doc_id for c in selection.negatives] == ["d", "e"]
    assert selection.removed == {"absolute_margin": 1, "range_min": 2}


def test_max_and_min_score_keep_their_boundaries() -> None:
    pool = make_pool(LADDER)
    config = FilterConfig(num_negatives=6, max_score=0.75, min_score=0.375)
    selection = select_negatives(pool, config)
    assert [c.doc_id for c in selection.negatives] == ["b", "c", "d", "e"]
    assert selection.removed == {"max_score": 1, "min_score": 1}


def test_absolute_margin_against_the_positive() -> None:
    # drop when score + 0.25 > 1.0, i.e. score > 0.75: only a (0.875)
    pool = make_pool(LADDER, positives={"pos": 1.0})
    assert ids(pool, FilterConfig(num_negatives=2, absolute_margin=0.25)) == ["b", "c"]


def test_relative_margin_is_95_percent_of_the_positive_for_bm25_like_scores() -> None:
    # positive 10, margin 0.05: threshold 9.5; 9.75 goes, 9.5 stays
    pool = make_pool([("x", 9.75), ("y", 9.5), ("z", 9.0)], positives={"pos": 10.0})
    selection = select_negatives(pool, FilterConfig(num_negatives=3, relative_margin=0.05))
    assert [c.doc_id for c in selection.negatives] == ["y", "z"]
    assert selection.removed == {"relative_margin": 1}


def test_relative_margin_is_sign_safe_for_negative_positive_scores() -> None:
    # p = -2, r = 0.5: threshold -2 - |-2| * 0.5 = -3 (a naive p * (1 - r) would give -1)
    pool = make_pool([("x", -2.5), ("y", -3.0), ("z", -3.5)], positives={"pos": -2.0})
    assert ids(pool, FilterConfig(num_negatives=3, relative_margin=0.5)) == ["y", "z"]


def test_margins_use_the_lowest_of_several_positives() -> None:
    pool = make_pool([("x", 0.75), ("y", 0.625), ("z", 0.5)], positives={"p1": 0.875, "p2": 0.625})
    # lowest positive 0.625: x (0.75) is above it and goes; y ties and stays
    assert ids(pool, FilterConfig(num_negatives=3, absolute_margin=0.0)) == ["y", "z"]
    assert ids(pool, FilterConfig(num_negatives=3, absolute_margin=0.125)) == ["z"]


def test_a_candidate_is_counted_under_the_first_filter_that_rejects_it() -> None:
    config = FilterConfig(absolute_margin=0.0, relative_margin=0.0, max_score=0.5)
    assert score_rejection(0.875, 0.75, config) == "absolute_margin"
    assert score_rejection(0.625, 0.75, config) == "max_score"
    assert score_rejection(0.5, 0.75, config) is None
    assert score_rejection(0.875, None, config) == "max_score"  # no positive: no margins


def test_random_sampling_is_seeded_per_query_and_sorted_by_score() -> None:
    pool = make_pool([(f"d{i:02d}", 1.0 - i / 64) for i in range(20)], positives={"pos": 2.0})
    config = FilterConfig(num_negatives=3, range_max=20, sampling="random", seed=7)
    first = select_negatives(pool, config).negatives
    assert first == select_negatives(pool, config).negatives
    assert [c.score for c in first] == sorted((c.score for c in first), reverse=True)
    draws = {
        tuple(ids(pool, FilterConfig(num_negatives=3, range_max=20, sampling="random", seed=s)))
        for s in range(12)
    }
    assert len(draws) > 1, "random sampling always returned the same negatives"
    assert any(draw != ("d00", "d01", "d02") for draw in draws)
    assert {d for draw in draws for d in draw} <= {f"d{i:02d}" for i in range(20)}


def test_too_few_candidates_are_never_padded() -> None:
    pool = make_pool([("a", 0.5), ("b", 0.25)], positives={"pos": 1.0})
    assert ids(pool, FilterConfig(num_negatives=5)) == ["a", "b"]


def test_default_range_max_follows_sentence_transformers() -> None:
    assert FilterConfig(num_negatives=3).resolve_range_max(2) == 0 + 3 + 2
    assert FilterConfig(num_negatives=3, range_min=4, relative_margin=0.05).resolve_range_max(
        1
    ) == (4 + 30 + 1)
    assert FilterConfig(num_negatives=3, range_max=7).resolve_range_max(5) == 7


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_negatives": 0}, "num_negatives"),
        ({"range_min": -1}, "range_min"),
        ({"range_min": 3, "range_max": 4, "num_negatives": 2}, "range_max"),
        ({"sampling": "best"}, "sampling"),
        ({"min_negatives": 4, "num_negatives": 3}, "min_negatives"),
        ({"min_score": 0.9, "max_score": 0.5}, "min_score"),
    ],
)
def test_bad_configs_are_rejected_naming_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FilterConfig(**kwargs)  # type: ignore[arg-type]


def tiny_split() -> BeirSplit:
    docs = [Document(f"d{i}", "", f"document number {i}") for i in range(6)]
    corpus = Corpus.from_documents(docs)
    queries = {"q1": "first", "q2": "second", "q3": "third", "q4": "fourth"}
    qrels = {"q1": {"d0": 1}, "q2": {"d1": 1}, "q3": {"d2": 1}, "q4": {"d3": 0}}
    return BeirSplit("train", corpus, queries, qrels)


def test_queries_short_or_without_negatives_are_reported_not_padded() -> None:
    split = tiny_split()
    lists = CandidateLists(
        query_ids=("q1", "q2", "q3", "q4"),
        positions=np.array(
            [[1, 2, 3], [0, 2, -1], [4, 5, 1], [0, 1, 2]], np.int32
        ),  # (4 queries, depth 3)
        scores=np.array(
            [[0.5, 0.25, 0.125], [0.75, 0.5, 0.0], [0.5, 0.25, 0.125], [0.5, 0.25, 0.125]],
            np.float32,
        ),
        positive_ids=(("d0",), ("d1",), ("d2",), ()),
        positive_scores=((1.0,), (0.25,), (1.0,), ()),
    )
    # q1: 3 candidates pass -> full. q2: positive 0.25, margin 0 drops 0.75 and 0.5 -> none.
    # q3: d4, d5, d1 all pass -> full. q4: no positive (only a grade-0 judgement).
    config = FilterConfig(num_negatives=3, absolute_margin=0.0, min_negatives=1)
    run = select_from_candidates(split, lists, config, "test")
    assert [r.query_id for r in run.rows] == ["q1", "q3"]
    assert run.rows[0].negative_ids == ("d1", "d2", "d3")
    assert run.report.full == 2 and run.report.short == 0
    assert run.report.skipped == {"too_few_negatives": 1, "no_positive": 1}
    assert run.report.skipped_ids == {"too_few_negatives": ("q2",), "no_positive": ("q4",)}
    assert run.report.removed == {"absolute_margin": 2}

    short = select_from_candidates(split, lists, FilterConfig(num_negatives=3), "test")
    # without the margin q2 keeps d0, d2 (its positive d1 is not a candidate): short, kept
    assert short.report.short == 1 and short.report.short_ids == ("q2",)
    assert next(r for r in short.rows if r.query_id == "q2").negative_ids == ("d0", "d2")
