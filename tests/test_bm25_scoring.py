"""The numpy BM25 index: hand-checked scores, a straightforward reference for every variant,
bit-for-bit agreement with bm25s (the index it replaced), top-k ties, and saved indexes."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

import bm25s
import numpy as np
import pytest

from hardneg.core.beir import Corpus, Document
from hardneg.core.bm25 import FORMAT_VERSION, BM25Index, BM25Params, BM25Tokenizer, top_k

METHODS = ["lucene", "robertson", "atire", "bm25l", "bm25+"]
TINY = [["cat", "sat", "mat"], ["cat", "cat", "dog"], ["dog", "bird"]]


def scores_of(index: BM25Index, query: list[str]) -> np.ndarray:
    return index.scores.block([index.term_ids(query)])[0]


def test_lucene_scores_worked_by_hand() -> None:
    # N = 3 documents, avgdl = 8/3, k1 = 1.2, b = 0.75
    # idf(cat) = idf(dog) = ln(1 + (3 - 2 + 0.5) / (2 + 0.5)) = ln(1.6) = 0.470004
    # idf(bird) = ln(1 + 2.5 / 1.5) = ln(8/3) = 0.980829
    # length norm: |d| = 3 -> 0.25 + 0.75 * 3 / (8/3) = 1.09375; |d| = 2 -> 0.8125
    # cat in d0: 0.470004 * 1 / (1 + 1.2 * 1.09375) = 0.470004 / 2.3125 = 0.203245
    # cat in d1 (tf 2): 0.470004 * 2 / (2 + 1.3125) = 0.283776
    # dog bird in d2: (0.470004 + 0.980829) / (1 + 1.2 * 0.8125) = 1.450833 / 1.975 = 0.734599
    index = BM25Index.from_tokens(TINY, BM25Params(k1=1.2, b=0.75), ["d0", "d1", "d2"])
    np.testing.assert_allclose(scores_of(index, ["cat"]), [0.203245, 0.283776, 0.0], atol=1e-6)
    np.testing.assert_allclose(
        scores_of(index, ["dog", "bird"]), [0.0, 0.203245, 0.734599], atol=1e-6
    )
    # a repeated query term counts twice; unknown terms count nothing
    np.testing.assert_allclose(
        scores_of(index, ["cat", "zebra", "cat"]), [0.406490, 0.567552, 0.0], atol=1e-6
    )


def reference_scores(
    docs: list[list[str]], query: list[str], method: str, k1: float, b: float
) -> list[float]:
    """BM25 written out document by document, term by term, in double precision."""
    n = len(docs)
    avgdl = sum(map(len, docs)) / n
    df = Counter(term for doc in docs for term in set(doc))
    delta = 0.5
    out = []
    for doc in docs:
        tf = Counter(doc)
        norm = 1 - b + b * len(doc) / avgdl
        total = 0.0
        for term in query:
            if term not in df:
                continue
            m, f = df[term], tf[term]
            if method == "lucene":
                weight = math.log(1 + (n - m + 0.5) / (m + 0.5)) * f / (f + k1 * norm)
            elif method == "robertson":
                rsj = max((n - m + 0.5) / (m + 0.5), 1.0)
                weight = math.log(rsj) * f / (f + k1 * norm)
            elif method == "atire":
                weight = math.log(n / m) * (k1 + 1) * f / (f + k1 * norm)
            elif method == "bm25l":
                c = f / norm  # absent terms (f = 0) still add idf * (k1 + 1) * delta / (k1 + delta)
                weight = math.log((n + 1) / (m + 0.5)) * (k1 + 1) * (c + delta) / (k1 + c + delta)
            else:  # bm25+: absent terms still add idf * delta
                weight = math.log((n + 1) / m) * ((k1 + 1) * f / (k1 * norm + f) + delta)
            total += weight
        out.append(total)
    return out


def random_corpus(seed: int) -> tuple[list[list[str]], list[list[str]]]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(40)]
    weights = [1 / (i + 1) for i in range(40)]  # Zipf-like: some terms in most documents
    docs = [rng.choices(vocab, weights, k=rng.randint(1, 30)) for _ in range(60)]
    docs[7] = []  # an empty document still counts in N and avgdl
    queries = [rng.choices([*vocab, "unknown"], k=rng.randint(1, 6)) for _ in range(25)]
    return docs, queries


@pytest.mark.parametrize("method", METHODS)
def test_every_variant_matches_the_reference(method: str) -> None:
    docs, queries = random_corpus(1)
    params = BM25Params(k1=1.3, b=0.6, method=method)
    index = BM25Index.from_tokens(docs, params, [str(i) for i in range(len(docs))])
    for query in queries:
        expected = reference_scores(docs, query, method, params.k1, params.b)
        np.testing.assert_allclose(scores_of(index, query), expected, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("method", METHODS)
def test_scores_are_bit_identical_to_bm25s(method: str) -> None:
    docs, queries = random_corpus(2)
    params = BM25Params(k1=1.2, b=0.75, method=method)
    ours = BM25Index.from_tokens(docs, params, [str(i) for i in range(len(docs))])
    theirs = bm25s.BM25(k1=params.k1, b=params.b, method=method)
    theirs.index(docs, show_progress=False)
    blocks = ours.scores.block([ours.term_ids(q) for q in queries])
    for query, row in zip(queries, blocks, strict=True):
        np.testing.assert_array_equal(row, theirs.get_scores(query))


def brute_top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    positions = np.full((len(scores), k), -1)
    values = np.zeros((len(scores), k), np.float32)
    for row, line in enumerate(scores):
        best = sorted((c for c in range(len(line)) if line[c] > 0), key=lambda c: (-line[c], c))
        positions[row, : len(best[:k])] = best[:k]
        values[row, : len(best[:k])] = line[best[:k]]
    return positions, values


def test_top_k_breaks_ties_by_lower_row_and_skips_non_matches() -> None:
    scores = np.array([[0.5, 2.0, 0.5, 0.5, 0.0, 1.0], [0, 0, 0, 0, 0, 0]], np.float32)
    positions, values = top_k(scores, 3)
    assert positions.tolist() == [[1, 5, 0], [-1, -1, -1]]  # 0.5 ties: column 0 wins
    assert values.tolist() == [[2.0, 1.0, 0.5], [0.0, 0.0, 0.0]]
    assert top_k(scores, 9)[0][0].tolist() == [1, 5, 0, 2, 3, -1, -1, -1, -1]
    rng = np.random.default_rng(0)
    grid = np.array([0, 0, 0, -1, 0.25, 0.5, 0.75, 1], np.float32)  # many ties and zeros
    for _ in range(200):
        shape, k = tuple(rng.integers(1, 12, size=2)), int(rng.integers(1, 15))
        scores = rng.choice(grid, size=shape)
        for got, want in zip(top_k(scores, k), brute_top_k(scores, k), strict=True):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", range(4))
def test_top_k_of_wide_rows_equals_a_full_sort(seed: int) -> None:
    # wide enough rows (columns > 16 x k) that top_k cuts at a group maximum before sorting
    rng = np.random.default_rng(seed)
    grid = np.array([0, 0, 0, 0, -1, 0.125, 0.25, 0.5, 0.75, 1, 2], np.float32)
    scores = rng.choice(grid, size=(7, 1001)).astype(np.float32)
    scores[1] = 0.5  # a whole row tied
    scores[2] = rng.random(1001, dtype=np.float32)  # no ties
    scores[3, :] = 0  # no match at all, then a few matches only
    scores[3, [990, 5, 700]] = [0.25, 0.25, 3.0]
    scores[4, ::13] = 2.0  # ties at the cut spread over every group
    for k in (1, 5, 20, 62):
        for got, want in zip(top_k(scores, k), brute_top_k(scores, k), strict=True):
            np.testing.assert_array_equal(got, want)


def corpus_of(docs: list[str]) -> Corpus:
    return Corpus.from_documents([Document(f"d{i}", "", text) for i, text in enumerate(docs)])


TEXTS = ["wolves eat deer", "deer eat grass", "wolves hunt in packs", "grass grows", "packs"]


def test_search_and_score_reads_extra_rows_from_the_same_scores() -> None:
    index = BM25Index.build(corpus_of(TEXTS), BM25Params(method="bm25+"))
    tokens = index.tokenize(["wolves deer", "grass"])
    results, extra = index.search_and_score(tokens, ["a", "b"], 2, also=[[4, 0, 1], [3]])
    # d1 (deer) and d2 (wolves) tie: same df, same length; the lower row comes first
    assert [d for d, _ in results.hits(0)] == ["d0", "d1"]
    assert results.scores[0, 1] == index.score_documents(tokens[0], [2])[0]
    for row, rows in enumerate([[4, 0, 1], [3]]):
        assert extra[row] == index.score_documents(tokens[row], rows)
    assert extra[0][1] == results.scores[0, 0]  # d0 is listed first: exactly its listed score


def test_index_from_term_ids_equals_the_index_from_token_strings() -> None:
    texts = [" ".join(words) for words in random_corpus(3)[0]] + ["", "the and of"]
    corpus = corpus_of(texts)
    tokenize = BM25Tokenizer(BM25Params())
    ids = tokenize.ids(texts)
    strings = tokenize(texts)
    assert ids.lengths.tolist() == [len(t) for t in strings]
    terms = {i: t for t, i in ids.vocab.items()}
    assert sorted(terms) == list(range(len(terms)))  # the ids are 0..n-1
    assert [terms[i] for i in ids.ids.tolist()] == [t for doc in strings for t in doc]
    built = BM25Index.build(corpus)  # tokenizes to ids
    from_strings = BM25Index.from_tokens(strings, BM25Params(), corpus.ids)
    queries = [["w1", "w3", "w1"], ["w7"], ["unknown"]]
    np.testing.assert_array_equal(
        built.scores.block([built.term_ids(q) for q in queries]),
        from_strings.scores.block([from_strings.term_ids(q) for q in queries]),
    )


def test_saved_index_round_trips_and_old_formats_are_rebuilt(tmp_path: Path) -> None:
    corpus = corpus_of(TEXTS)
    params = BM25Params(method="bm25l", k1=0.9)
    folder = tmp_path / "bm25"
    built = BM25Index.load_or_build(folder, corpus, params)
    loaded = BM25Index.load(folder, corpus)
    tokens = built.tokenize(["wolves eat grass"])
    np.testing.assert_array_equal(scores_of(built, tokens[0]), scores_of(loaded, tokens[0]))
    assert loaded.params == params

    meta = json.loads((folder / "hardneg-bm25.json").read_text())
    (folder / "hardneg-bm25.json").write_text(json.dumps(meta | {"format": 1}))
    with pytest.raises(ValueError, match="another format"):
        BM25Index.load(folder, corpus)
    rebuilt = BM25Index.load_or_build(folder, corpus, params)
    assert json.loads((folder / "hardneg-bm25.json").read_text())["format"] == FORMAT_VERSION
    np.testing.assert_array_equal(scores_of(rebuilt, tokens[0]), scores_of(built, tokens[0]))
