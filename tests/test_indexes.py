from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hardneg.core.beir import Corpus, Document, find_corpus_file, load_corpus, load_split
from hardneg.core.bm25 import BM25Index, BM25Params
from hardneg.core.dense import DenseIndex, DenseIndexConfig
from hardneg.core.metrics import evaluate
from hardneg.core.workspace import Workspace
from hardneg.trainers.evaluation import evaluate_bm25


def _unit_vectors(rows: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_flat_faiss_equals_brute_force_numpy() -> None:
    docs, queries = _unit_vectors(500, 32, 0), _unit_vectors(37, 32, 1)
    ids = [f"d{i}" for i in range(len(docs))]
    results = DenseIndex.build(docs, ids).search(
        queries, [f"q{i}" for i in range(37)], k=10, chunk_size=8
    )
    brute = queries @ docs.T  # (37, 500)
    expected = np.argsort(-brute, axis=1)[:, :10]
    np.testing.assert_array_equal(results.positions, expected)
    np.testing.assert_allclose(
        results.scores, np.take_along_axis(brute, expected, axis=1), rtol=1e-5
    )
    assert results.hits(0)[0][0] == ids[expected[0, 0]]


def test_ivf_with_every_cell_probed_is_exact() -> None:
    docs, queries = _unit_vectors(2000, 16, 2), _unit_vectors(20, 16, 3)
    config = DenseIndexConfig(kind="ivf", nlist=16, nprobe=16)
    results = DenseIndex.build(docs, [str(i) for i in range(2000)], config).search(
        queries, [str(i) for i in range(20)], k=5
    )
    np.testing.assert_array_equal(results.positions, np.argsort(-(queries @ docs.T), axis=1)[:, :5])


def test_hnsw_finds_nearly_all_true_neighbours() -> None:
    docs, queries = _unit_vectors(2000, 16, 4), _unit_vectors(50, 16, 5)
    results = DenseIndex.build(
        docs, [str(i) for i in range(2000)], DenseIndexConfig(kind="hnsw")
    ).search(queries, [str(i) for i in range(50)], k=10)
    truth = np.argsort(-(queries @ docs.T), axis=1)[:, :10]
    overlap = np.mean(
        [len(set(a) & set(b)) / 10 for a, b in zip(results.positions, truth, strict=True)]
    )
    assert overlap >= 0.95


def test_k_beyond_corpus_is_padded() -> None:
    docs = _unit_vectors(3, 4, 6)
    results = DenseIndex.build(docs, ["a", "b", "c"]).search(docs[:1], ["q"], k=5)
    assert results.positions[0, 3:].tolist() == [-1, -1]
    assert len(results.hits(0)) == 3


def test_saved_ivf_index_is_reused(tmp_path: Path) -> None:
    docs = _unit_vectors(400, 8, 7)
    ids = [str(i) for i in range(400)]
    config = DenseIndexConfig(kind="ivf", nlist=8, nprobe=8)
    first = DenseIndex.load_or_build(tmp_path / "ivf", docs, ids, {"stem": "x"}, config)
    assert (tmp_path / "ivf" / "index.faiss").is_file()
    mtime = (tmp_path / "ivf" / "index.faiss").stat().st_mtime_ns
    again = DenseIndex.load_or_build(tmp_path / "ivf", docs, ids, {"stem": "x"}, config)
    assert (tmp_path / "ivf" / "index.faiss").stat().st_mtime_ns == mtime
    q = docs[:5]
    np.testing.assert_array_equal(
        first.search(q, list("abcde"), 3).positions, again.search(q, list("abcde"), 3).positions
    )


def test_bad_index_config() -> None:
    with pytest.raises(ValueError):
        DenseIndexConfig(kind="lsh")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        DenseIndexConfig(nprobe=0)


def _tiny_corpus() -> Corpus:
    return Corpus.from_documents(
        [
            Document("d1", "", "the cat sat on the mat"),
            Document("d2", "", "dogs chase cats in the park"),
            Document("d3", "", "quantum computers use qubits"),
        ]
    )


def test_bm25_ranks_stemmed_matches_and_drops_non_matches() -> None:
    index = BM25Index.build(_tiny_corpus())
    results = index.search(["running cats", "zebra"], ["q1", "q2"], k=3)
    assert {doc for doc, _ in results.hits(0)} == {"d1", "d2"}  # "cats" and "cat" share a stem
    assert results.hits(1) == []  # no term matches: no fake hits with score 0
    assert results.positions[0, 2] == -1


def test_bm25_save_load_round_trip(tmp_path: Path) -> None:
    corpus = _tiny_corpus()
    folder = tmp_path / "bm25"
    built = BM25Index.load_or_build(folder, corpus, BM25Params(k1=1.2, b=0.5))
    loaded = BM25Index.load_or_build(folder, corpus, BM25Params(k1=1.2, b=0.5))
    a = built.search(["cat mat"], ["q"], 3)
    b = loaded.search(["cat mat"], ["q"], 3)
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_allclose(a.scores, b.scores)
    other = Corpus.from_documents([Document("x", "", "other")])
    with pytest.raises(ValueError, match="another corpus"):
        BM25Index.load(folder, other)


def test_bm25_params_validated() -> None:
    with pytest.raises(ValueError):
        BM25Params(b=1.5)


def test_bm25_scifact_ndcg_floor(scifact_dir: Path, tmp_path: Path) -> None:
    corpus = load_corpus(find_corpus_file(scifact_dir))
    split = load_split(scifact_dir, "test", corpus)
    result = evaluate_bm25(split, Workspace(tmp_path))
    assert result.evaluation.mean["ndcg@10"] >= 0.68
    assert result.evaluation.mean["recall@100"] >= 0.90
    assert evaluate(split.qrels, result.results.to_run()).mean == result.evaluation.mean
