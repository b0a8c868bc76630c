"""Corpus-free negatives: each filter on hand-built generations (served by a scripted endpoint),
with the real MiniLM as near-duplicate embedder and as scorer. Scores below were checked by hand:
query/positive 0.670; answer-like paraphrase 0.724 (cosine to positive 0.752); reworded copy
cosine 0.902 to the positive; the two kept negatives 0.631 and 0.555."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hardneg.core.beir import load_split
from hardneg.core.encoders import load_encoder
from hardneg.miners.llm.negatives import (
    NegativeGenConfig,
    NegativeGeneration,
    QueryPositives,
    answers_query,
    bi_encoder_embedder,
    bi_encoder_scorer,
    generate_negatives,
    split_positives,
)
from hardneg.miners.llm.openai_client import OpenAIClient, OpenAIConfig
from hardneg.miners.llm.parsing import generated_id
from tests.test_llm_fakes import Reply, fake_openai, user_text

WOLVES = QueryPositives(
    "q1",
    "which animals descend from wolves",
    ("d2",),
    ("Dogs Dogs are loyal domesticated descendants of wolves.",),
)
VOLCANO = QueryPositives(
    "q3",
    "what comes out of a volcano",
    ("d4",),
    ("Volcanoes Magma erupts through vents in the crust of the earth.",),
)
KEPT_1 = (
    "Wolves live in packs led by a breeding pair and defend large territories in the northern "
    "forests of Europe and Asia."
)
KEPT_2 = (
    "Wolves howl to keep in touch with their pack across long distances, especially at dusk and "
    "during the winter breeding season."
)
WOLF_SCRIPT = [
    # copy of the positive: word Jaccard 0.78
    "Dogs are loyal domesticated descendants of wolves, and all dogs are loyal domesticated "
    "descendants of wolves.",
    # answers the query: scores 0.724 > 0.670 - 0.03 * 0.670
    "The domestic dog was bred by humans from the grey wolf many thousands of years ago, so dogs "
    "descend from wolves.",
    # reworded positive: Jaccard 0.41 but MiniLM cosine 0.902
    "Domesticated dogs are loyal descendants of the wolves that once lived near human camps in "
    "the distant past.",
    KEPT_1,
    KEPT_2,
    "Sure! Here is a passage:",  # nothing else
    "Which animals descend from wolves?",  # the query again
    f"Passage: {KEPT_1}",  # a repeat
]


def scripted(payload: dict[str, object]) -> Reply:
    text = user_text(payload)
    seed = payload["seed"]
    assert isinstance(seed, int)
    if WOLVES.query in text:
        return Reply(content=WOLF_SCRIPT[seed])
    return Reply(content="I'm sorry, I cannot write that.")


@pytest.fixture(scope="module")
def encoder():  # type: ignore[no-untyped-def]
    return load_encoder()


@pytest.fixture
def llm() -> Iterator[OpenAIClient]:
    with fake_openai(scripted) as server:
        config = OpenAIConfig(base_url=server.url, model="x", api_key_env=None, max_retries=0)
        with OpenAIClient(config) as client:
            yield client


CONFIG = NegativeGenConfig(per_query=8, max_positive_cosine=0.88, relative_margin=0.03)


def test_every_filter_on_hand_built_generations(llm: OpenAIClient, encoder: object) -> None:
    result = generate_negatives(
        llm,
        [WOLVES, VOLCANO],
        bi_encoder_embedder(encoder),  # type: ignore[arg-type]
        bi_encoder_scorer(encoder),  # type: ignore[arg-type]
        CONFIG,
    )
    assert isinstance(result, NegativeGeneration)
    assert result.report.kept == 2
    assert dict(result.report.dropped) == {
        "near_duplicate_positive": 2,
        "answers_query": 1,
        "empty": 1,
        "echoes_query": 1,
        "duplicate": 1,
        "refusal": 8,
    }
    assert result.skipped_queries == ("q3",)
    (row,) = result.rows
    assert row.query_id == "q1" and row.method == "llm"
    assert row.positive_ids == ("d2",) and row.positives == WOLVES.positives
    assert row.negatives == (KEPT_1, KEPT_2)  # best score first
    assert row.negative_ids == (generated_id(KEPT_1), generated_id(KEPT_2))
    assert row.positive_scores == (pytest.approx(0.670, abs=0.01),)
    assert row.negative_scores == (
        pytest.approx(0.631, abs=0.01),
        pytest.approx(0.555, abs=0.01),
    )


def test_without_embedder_and_scorer_only_text_checks_run(llm: OpenAIClient) -> None:
    result = generate_negatives(llm, [WOLVES], None, None, CONFIG)
    (row,) = result.rows
    assert row.negatives[:2] == tuple(WOLF_SCRIPT[1:3])  # nothing judged them
    assert len(row.negatives) == 4
    assert row.negative_scores == (None,) * 4 and row.positive_scores == (None,)
    assert result.report.dropped["near_duplicate_positive"] == 1  # Jaccard only


def test_looser_margins_keep_the_answer(llm: OpenAIClient, encoder: object) -> None:
    loose = NegativeGenConfig(per_query=8, max_positive_cosine=0.95, relative_margin=None)
    result = generate_negatives(
        llm,
        [WOLVES],
        bi_encoder_embedder(encoder),  # type: ignore[arg-type]
        bi_encoder_scorer(encoder),  # type: ignore[arg-type]
        loose,
    )
    assert len(result.rows[0].negatives) == 4
    assert "answers_query" not in result.report.dropped


def test_min_negatives_reports_short_queries(llm: OpenAIClient) -> None:
    strict = NegativeGenConfig(per_query=8, min_negatives=6)
    result = generate_negatives(llm, [WOLVES], None, None, strict)
    assert result.rows == () and result.skipped_queries == ("q1",)


def test_answer_threshold_conventions() -> None:
    relative = NegativeGenConfig(relative_margin=0.05, absolute_margin=None)
    assert answers_query(0.96, 1.0, relative) and not answers_query(0.95, 1.0, relative)
    # negative positive scores (cross-encoder logits): p - |p| r is below p
    assert answers_query(-2.05, -2.0, relative) and not answers_query(-2.2, -2.0, relative)
    absolute = NegativeGenConfig(relative_margin=None, absolute_margin=0.1)
    assert answers_query(0.95, 1.0, absolute) and not answers_query(0.9, 1.0, absolute)
    off = NegativeGenConfig(relative_margin=None, absolute_margin=None)
    assert not answers_query(5.0, 1.0, off)


def test_split_positives(tiny_beir: Path) -> None:
    split = load_split(tiny_beir, "test")
    items = split_positives(split)
    assert [(i.query_id, i.positive_ids) for i in items] == [
        ("q1", ("d2",)),
        ("q2", ("d3",)),
        ("q3", ("d4",)),
    ]
    assert items[0].positives == ("Dogs Dogs are loyal domesticated descendants of wolves.",)
    assert [i.query_id for i in split_positives(split, ["q3"])] == ["q3"]
