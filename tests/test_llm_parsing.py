"""Defensive parsing of small-model junk (cases taken from real SmolLM2-135M outputs)."""

from __future__ import annotations

import pytest

from hardneg.miners.llm.parsing import (
    DropReport,
    PassageLimits,
    QueryLimits,
    clean_passage,
    clean_query,
    generated_id,
    is_repetitive,
    normalize,
    shares_run,
    token_jaccard,
)

LONG_QUERY = (
    "what do grey wolves and red foxes and brown bears and lynx and wolverines eat during the "
    "long cold winter months in the boreal forests of northern canada alaska siberia finland "
    "and norway when prey is scarce"
)
PASSAGE = "Grey wolves hunt in packs across the northern forests of Canada and Alaska in winter."


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("where do grey wolves hunt", "where do grey wolves hunt"),
        ('**Query:** "where do grey wolves hunt"', "where do grey wolves hunt"),
        (
            "1. Where do wolves hunt in winter?\n2. What do wolves eat?",
            "Where do wolves hunt in winter?",
        ),
        ("Question 1: Where do wolves hunt?", "Where do wolves hunt?"),
        ("- 'how big is a wolf pack'", "how big is a wolf pack"),
        ("```\nhow big is a wolf pack\n```", "how big is a wolf pack"),
        (
            "Here's a potential question about wolves: \n\n"
            "What are the most common habitats of wolves",
            "What are the most common habitats of wolves",
        ),
        ("Sure! Here is a query.\nwolf pack size in Alaska", "wolf pack size in Alaska"),
        (
            "A question a person could answer:\n\nDo wolves live in Alaska?",
            "Do wolves live in Alaska?",
        ),
        ('A person might write: "Do grey wolves hunt in packs?"', "Do grey wolves hunt in packs?"),
        (
            "A: IL-13 and IL-4 are linked to allergic disease",
            "IL-13 and IL-4 are linked to allergic disease",
        ),
        (
            "COVID-19: what are the symptoms in children",
            "COVID-19: what are the symptoms in children",
        ),
        ("  what   do  wolves\teat  ", "what do wolves eat"),
        (
            "A researcher would search for: wolf pack hunting in Alaska",
            "wolf pack hunting in Alaska",
        ),
        # mentions "the text" but is about the passage's topic: not meta
        (
            "Which forests of Canada do grey wolves hunt in, according to the text?",
            "Which forests of Canada do grey wolves hunt in, according to the text?",
        ),
    ],
)
def test_queries_are_cleaned(raw: str, expected: str) -> None:
    assert clean_query(raw, PASSAGE).text == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   \n\n ", "empty"),
        ("Here is a question:", "empty"),
        ("```\n```", "empty"),
        ("I'm sorry, I can't help with that.", "refusal"),
        ("As an AI language model, I cannot browse.", "refusal"),
        ("wolves?", "too_short"),
        ("1.", "empty"),
        (LONG_QUERY, "too_long"),
        ("grey wolves hunt in packs across the northern forests", "echoes_source"),
        (
            'The researcher will search for the text "hunt in packs across the northern forests '
            'of Canada" to learn more',
            "echoes_source",
        ),
        ("What could this passage be about?", "meta"),
        ("What is the main topic of this abstract?", "meta"),
        ("The answer: Is this passage answerable?", "meta"),
        ("What is the question the scientist would search for to find the abstract?", "meta"),
        ("Write your answer as a question someone types into a search engine.", "meta"),
        ("miRNA processing - miRNA processing - miRNA processing - miRNA processing", "repetitive"),
        ("1.1.1.1.1.1.1.1.1.1.1.1 2.2.2.2.2.2.2.2.2.2", "repetitive"),
    ],
)
def test_junk_queries_are_dropped_with_a_reason(raw: str, reason: str) -> None:
    parsed = clean_query(raw, PASSAGE)
    assert (parsed.text, parsed.reason) == (None, reason)


def test_query_limits_are_configurable() -> None:
    assert clean_query("wolves hunt", PASSAGE, QueryLimits(min_words=2)).text == "wolves hunt"
    assert clean_query("do wolves hunt in packs", PASSAGE, QueryLimits(max_words=4)).reason == (
        "too_long"
    )
    short_echo = "wolves hunt in packs"  # verbatim, but shorter than echo_min_words
    assert clean_query(short_echo, PASSAGE).text == short_echo
    assert clean_query(short_echo, PASSAGE, QueryLimits(echo_min_words=4)).reason == (
        "echoes_source"
    )


QUERY = "which animals descend from wolves"


@pytest.mark.parametrize("label", ["Passage:", "Sentence 2:", "Original passage:", "**Text:**"])
def test_passage_labels_are_stripped(label: str) -> None:
    body = "Wolves live in packs led by a breeding pair and defend territories in winter."
    assert clean_passage(f"{label} {body}", QUERY).text == body


def test_passages_are_joined_and_unfinished_sentences_trimmed() -> None:
    raw = (
        "Passage: Wolves live in packs led by a breeding pair.\n"
        "Packs defend territories of up to a thousand square kilometres. They also"
    )
    assert clean_passage(raw, QUERY).text == (
        "Wolves live in packs led by a breeding pair. "
        "Packs defend territories of up to a thousand square kilometres."
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("Sure! Here is a passage:", "empty"),
        ("I cannot write misleading content.", "refusal"),
        ("Which animals descend from wolves?", "echoes_query"),
        ("Passage: which animals descend from wolves, really", "echoes_query"),
        ("Wolves are animals.", "too_short"),
        ("wolf " * 30 + "pack " * 30, "repetitive"),
    ],
)
def test_junk_passages_are_dropped_with_a_reason(raw: str, reason: str) -> None:
    parsed = clean_passage(raw, QUERY)
    assert (parsed.text, parsed.reason) == (None, reason)


def test_passage_length_limits() -> None:
    text = " ".join(f"word{i}" for i in range(50)) + "."
    assert clean_passage(text, QUERY, PassageLimits(max_words=40)).reason == "too_long"
    assert clean_passage(text, QUERY, PassageLimits(min_words=60)).reason == "too_short"
    assert clean_passage(text, QUERY).text == text


def test_helpers() -> None:
    assert normalize("  Where do Wolves, hunt? ") == "where do wolves hunt"
    assert token_jaccard("a b c", "b c d") == pytest.approx(2 / 4)
    assert token_jaccard("", "a") == 0.0
    assert generated_id("Where do wolves hunt?") == generated_id("where do wolves hunt")
    assert generated_id("a b").startswith("gen:") and generated_id("a b") != generated_id("a c")
    assert is_repetitive("a a a a a a a b") and not is_repetitive("how do wolves hunt in packs")
    assert shares_run("so: wolves hunt in packs, right", "Grey wolves hunt in packs here", 4)
    assert not shares_run("wolves hunt packs in winter", "Grey wolves hunt in packs here", 3)


def test_drop_report_counts_reasons_and_keeps_a_few_examples() -> None:
    report = DropReport(max_examples=2)
    report.keep(3)
    for text in ("x1", "x2", "x3"):
        report.drop("empty", text)
    report.drop("meta", "about this passage")
    summary = report.to_json()
    assert summary["total"] == 7 and summary["kept"] == 3
    assert summary["dropped"] == {"empty": 3, "meta": 1}
    assert summary["dropped_fraction"] == {"empty": 3 / 7, "meta": 1 / 7}
    assert summary["examples"] == {"empty": ["x1", "x2"], "meta": ["about this passage"]}
