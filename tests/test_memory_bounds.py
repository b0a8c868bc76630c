"""The mining path's memory bounds, checked functionally (no timing, no RSS).

- BM25 indexing tokenizes the corpus chunk by chunk; the index equals the one-shot build.
- BM25 search never scores more than one block of queries x documents at once.
- Selection reads every candidate's text for dedupe keys without keeping it.
- The membership test of the filters grows with queries x (depth + judged), not their product.
"""

from __future__ import annotations

import numpy as np
import pytest

from hardneg.core import bm25 as bm25_module
from hardneg.core.beir import BeirSplit, Corpus, Document
from hardneg.core.bm25 import BM25Index, BM25Params, BM25Tokenizer
from hardneg.core.bm25_scoring import TermScores
from hardneg.miners.bm25 import search_candidates
from hardneg.miners.filters import FilterConfig
from hardneg.miners.selection import CorpusTexts, _member, select_batch

WORDS = [
    "wolf",
    "deer",
    "grass",
    "river",
    "stone",
    "cloud",
    "forest",
    "hunt",
    "pack",
    "north",
    "light",
    "sugar",
    "magma",
    "vent",
]


def random_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(0, 12)))) for _ in range(n)]


def corpus_of(texts: list[str]) -> Corpus:
    return Corpus.from_documents([Document(f"d{i}", "", t) for i, t in enumerate(texts)])


@pytest.mark.parametrize("method", ["lucene", "bm25+"])
def test_chunked_indexing_equals_the_one_shot_index(
    monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    texts = [*random_texts(57), "", "the and of"]
    corpus = corpus_of(texts)
    params = BM25Params(method=method)
    whole = BM25Index.from_ids(BM25Tokenizer(params).ids(texts), params, corpus.ids)
    monkeypatch.setattr(bm25_module, "_TOKENIZE_CHUNK", 5)  # 12 chunks
    chunked = BM25Index.build(corpus, params)
    queries = [["wolf", "deer", "wolf"], ["magma"], ["sugar", "light", "vent"], ["absent"]]
    np.testing.assert_array_equal(
        whole.scores.block([whole.term_ids(q) for q in queries]),
        chunked.scores.block([chunked.term_ids(q) for q in queries]),
    )
    assert chunked.scores.num_docs == len(texts)
    assert len(chunked.scores.data) == len(whole.scores.data)


def test_search_scores_one_bounded_block_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = random_texts(400, seed=1)
    corpus = corpus_of(texts)
    queries = {f"q{i}": t or "wolf" for i, t in enumerate(random_texts(60, seed=2))}
    split = BeirSplit("test", corpus, queries, {q: {f"d{i}": 1} for i, q in enumerate(queries)})
    index = BM25Index.build(corpus)
    unbounded = search_candidates(split, index, 10)
    monkeypatch.setattr(bm25_module, "_BLOCK_CELLS", 1000)  # 2 queries x 400 documents a block
    shapes: list[tuple[int, ...]] = []
    real_block = TermScores.block

    def recorded(self: TermScores, batch: list[np.ndarray]) -> np.ndarray:
        out = real_block(self, batch)
        shapes.append(out.shape)
        return out

    monkeypatch.setattr(TermScores, "block", recorded)
    bounded = search_candidates(split, index, 10)
    assert max(rows for rows, _ in shapes) == 2 and sum(rows for rows, _ in shapes) == 60
    np.testing.assert_array_equal(bounded.positions, unbounded.positions)
    np.testing.assert_array_equal(bounded.scores, unbounded.scores)
    assert bounded.positive_scores == unbounded.positive_scores

    texts_seen = CorpusTexts(corpus)
    filtered = np.ones(len(queries), dtype=bool)
    select_batch(split, bounded, FilterConfig(dedupe=True), filtered, texts_seen)
    assert len(texts_seen) == 0  # every candidate's text read (dedupe keys), none kept


def test_membership_matches_the_broadcast_comparison() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        n, depth, width = (int(x) for x in rng.integers(1, 9, 3))
        values = rng.integers(-3, 12, (n, depth))
        sets = rng.integers(-3, 12, (n, width))
        expected = (values[:, :, None] == sets[:, None, :]).any(axis=2)
        np.testing.assert_array_equal(_member(values, sets), expected)
    assert not _member(np.zeros((2, 3), np.int64), np.zeros((2, 0), np.int64)).any()
