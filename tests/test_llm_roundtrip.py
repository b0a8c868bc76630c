"""The round-trip filter on hand-built cases (BM25 and dense), and query generation end to end
through a scripted endpoint, down to a BEIR folder that loads as a training split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hardneg.core.beir import Corpus, DataError, Document, load_split
from hardneg.core.bm25 import BM25Index
from hardneg.core.dense import DenseIndex
from hardneg.core.encoders import encode_texts, load_encoder
from hardneg.miners.llm.client import LLMError, SamplingParams
from hardneg.miners.llm.openai_client import OpenAIClient, OpenAIConfig
from hardneg.miners.llm.parsing import generated_id
from hardneg.miners.llm.queries import (
    Candidate,
    QueryGenConfig,
    QueryGeneration,
    TextRetriever,
    bm25_retriever,
    dense_retriever,
    generate_queries,
    round_trip_ranks,
    write_generated_queries,
)
from tests.conftest import TINY_DOCS
from tests.test_llm_fakes import Reply, fake_openai, user_text


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus.from_documents(
        [Document(str(d["_id"]), str(d["title"]), str(d["text"])) for d in TINY_DOCS]
    )


@pytest.fixture(scope="module")
def bm25(corpus: Corpus) -> TextRetriever:
    return bm25_retriever(BM25Index.build(corpus))


CASES = [
    Candidate("which animals descend from wolves", "d2"),  # BM25: d2 first
    Candidate("grey wolves hunt in packs", "d2"),  # BM25: d5 first, d2 second
    Candidate("magma erupting through the crust", "d1"),  # d1 shares no term
    Candidate("sugar from sunlight", "d3"),  # d3 first
    Candidate("loyal pets", "d1"),  # BM25: only d2 matches; MiniLM: d2 then d1
]


def test_bm25_round_trip_ranks(bm25: TextRetriever) -> None:
    assert round_trip_ranks(CASES, bm25, k=1) == [1, None, None, 1, None]
    assert round_trip_ranks(CASES, bm25, k=2) == [1, 2, None, 1, None]
    assert round_trip_ranks(CASES, bm25, k=5) == [1, 2, None, 1, None]
    assert round_trip_ranks([], bm25, k=3) == []
    with pytest.raises(ValueError, match="positive"):
        round_trip_ranks(CASES, bm25, k=0)


def test_dense_round_trip_ranks(corpus: Corpus) -> None:
    model = load_encoder()
    index = DenseIndex.build(encode_texts(model, corpus.full_texts()), corpus.ids)
    dense = dense_retriever(index, model)
    assert round_trip_ranks(CASES, dense, k=1) == [1, None, None, 1, None]
    assert round_trip_ranks(CASES, dense, k=2) == [1, 2, None, 1, 2]


# What the scripted "LLM" writes, by passage and sample seed.
SCRIPT = {
    ("Cats are small", 0): "1. Are cats carnivorous mammals?",
    ("Cats are small", 1): "What is this passage about?",  # meta
    ("Dogs are loyal", 0): "which animals descend from wolves",
    ("Dogs are loyal", 1): 'Query: "Which animals descend from wolves"',  # duplicate
    ("Grey wolves hunt", 0): "Which animals descend from wolves?",  # d5 ranks 2nd: kept, merged
    ("Grey wolves hunt", 1): "magma erupting through the crust",  # fails the round trip
}


def scripted(payload: dict[str, object]) -> Reply:
    text = user_text(payload)
    for (start, seed), answer in SCRIPT.items():
        if start in text and payload["seed"] == seed:
            return Reply(content=answer)
    return Reply(400, raw=b"unexpected prompt")


def llm_at(url: str) -> OpenAIClient:
    return OpenAIClient(OpenAIConfig(base_url=url, model="x", api_key_env=None, max_retries=0))


def run(corpus: Corpus, retriever: TextRetriever, k: int = 2) -> QueryGeneration:
    config = QueryGenConfig(per_passage=2, round_trip_k=k, sampling=SamplingParams(seed=0))
    with fake_openai(scripted) as server, llm_at(server.url) as llm:
        return generate_queries(llm, corpus, [0, 1, 4], retriever, config)


def test_generation_cleans_filters_and_merges(corpus: Corpus, bm25: TextRetriever) -> None:
    result = run(corpus, bm25)
    texts = {q.text: (q.doc_ids, q.ranks) for q in result.queries}
    assert texts == {
        "Are cats carnivorous mammals?": (("d1",), (1,)),
        "which animals descend from wolves": (("d2", "d5"), (1, 2)),
    }
    report = result.report.to_json()
    assert report["kept"] == 3 and report["total"] == 6
    assert report["dropped"] == {"meta": 1, "duplicate": 1, "round_trip": 1}
    wolves = next(q for q in result.queries if q.doc_ids == ("d2", "d5"))
    assert wolves.query_id == generated_id("which animals descend from wolves")


def test_a_stricter_round_trip_keeps_less(corpus: Corpus, bm25: TextRetriever) -> None:
    result = run(corpus, bm25, k=1)
    texts = {q.text: q.doc_ids for q in result.queries}
    assert texts == {
        "Are cats carnivorous mammals?": ("d1",),
        "which animals descend from wolves": ("d2",),
    }
    assert result.report.dropped["round_trip"] == 2


def test_failures_stop_the_run_unless_skipped(corpus: Corpus, bm25: TextRetriever) -> None:
    with fake_openai([Reply(500, raw=b"down")]) as server, llm_at(server.url) as llm:
        with pytest.raises(LLMError, match="HTTP 500"):
            generate_queries(llm, corpus, [0], bm25, QueryGenConfig(per_passage=1))
        lenient = QueryGenConfig(per_passage=2, skip_failures=True)
        result = generate_queries(llm, corpus, [0], bm25, lenient)
    assert result.queries == () and result.report.dropped == {"llm_error": 2}


def test_output_is_a_loadable_beir_training_split(
    corpus: Corpus, bm25: TextRetriever, tiny_beir: Path, tmp_path: Path
) -> None:
    result = run(corpus, bm25)
    out = write_generated_queries(tmp_path / "gen", result, tiny_beir, {"model": "scripted"})
    split = load_split(out, "train")
    assert split.corpus.fingerprint == corpus.fingerprint
    wolves = generated_id("which animals descend from wolves")
    assert split.qrels[wolves] == {"d2": 1, "d5": 1}
    assert split.queries[wolves] == "which animals descend from wolves"
    assert len(split.queries) == 2
    summary = json.loads((out / "generation.json").read_text())
    assert summary["model"] == "scripted" and summary["queries"] == 2
    assert summary["report"]["dropped"] == {"meta": 1, "duplicate": 1, "round_trip": 1}
    rows = [json.loads(line) for line in (out / "queries.jsonl").read_text().splitlines()]
    assert {tuple(r["metadata"]["source"]) for r in rows} == {("d1",), ("d2", "d5")}


def test_output_is_all_or_nothing(corpus: Corpus, bm25: TextRetriever, tmp_path: Path) -> None:
    result = run(corpus, bm25)
    empty = tmp_path / "no-corpus"
    empty.mkdir()
    with pytest.raises(DataError, match="no corpus"):
        write_generated_queries(tmp_path / "gen", result, empty, {})
    assert not (tmp_path / "gen").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["no-corpus"]
