"""Encoders and the embedding store, with the real packaged all-MiniLM-L6-v2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from hardneg.core.beir import Corpus, Document, load_split
from hardneg.core.embeddings import EmbeddingKey, EmbeddingStore
from hardneg.core.encoders import encode_texts, load_encoder, model_fingerprint, resolve_model
from hardneg.core.workspace import Workspace
from hardneg.trainers.evaluation import evaluate_dense


@pytest.fixture(scope="module")
def model() -> SentenceTransformer:
    return load_encoder(device="cpu")


def _corpus(n: int = 6) -> Corpus:
    return Corpus.from_documents(
        [
            Document(f"d{i}", f"title {i}", f"passage number {i} about topic {i % 3}")
            for i in range(n)
        ]
    )


def test_default_model_is_the_packaged_copy() -> None:
    assert Path(resolve_model(None)).is_dir()
    assert resolve_model("sentence-transformers/all-MiniLM-L6-v2") == resolve_model(None)
    assert resolve_model("some/other-model") == "some/other-model"


def test_encoding_is_unit_norm_float32(model: SentenceTransformer) -> None:
    vectors = encode_texts(model, ["a cat", "a dog", "quantum physics"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_store_encodes_once_and_memory_maps(tmp_path: Path, model: SentenceTransformer) -> None:
    store = EmbeddingStore(tmp_path)
    corpus = _corpus()
    stages: list[str] = []
    first = store.encode_corpus(
        model, corpus, chunk_size=4, progress=lambda d, t, s: stages.append(s)
    )
    path = store.path(EmbeddingKey.for_model(corpus, model))
    assert path.is_file() and stages.count("encoding corpus") == 3  # start + two chunks
    mtime = path.stat().st_mtime_ns
    stages.clear()
    second = store.encode_corpus(model, corpus, progress=lambda d, t, s: stages.append(s))
    assert stages == [] and path.stat().st_mtime_ns == mtime  # nothing re-encoded
    assert isinstance(second, np.memmap)
    np.testing.assert_array_equal(first, second)
    direct = encode_texts(model, [corpus.document(i).full_text for i in range(len(corpus))])
    np.testing.assert_allclose(second, direct, atol=1e-5)


def test_key_changes_with_prompt_length_and_corpus(model: SentenceTransformer) -> None:
    corpus = _corpus()
    base = EmbeddingKey.for_model(corpus, model)
    assert EmbeddingKey.for_model(corpus, model, prompt="passage: ").stem != base.stem
    assert EmbeddingKey.for_model(_corpus(5), model).corpus_fingerprint != base.corpus_fingerprint
    shorter = load_encoder(device="cpu", max_length=64)
    assert EmbeddingKey.for_model(corpus, shorter).stem != base.stem


def test_fingerprint_follows_the_weights() -> None:
    model = load_encoder(device="cpu")
    before = model_fingerprint(model)
    assert model_fingerprint(load_encoder(device="cpu")) == before
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    assert model_fingerprint(model) != before


def test_cancelled_encoding_leaves_no_file(tmp_path: Path, model: SentenceTransformer) -> None:
    class CancelledError(Exception):
        pass

    def cancel_after_first_chunk(done: int, total: int, stage: str) -> None:
        if done > 0:
            raise CancelledError

    with pytest.raises(CancelledError):
        EmbeddingStore(tmp_path).encode_corpus(
            model, _corpus(), chunk_size=3, progress=cancel_after_first_chunk
        )
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_dense_evaluation_ranks_the_tiny_positives_first(
    tiny_beir: Path, tmp_path: Path, model: SentenceTransformer
) -> None:
    result = evaluate_dense(load_split(tiny_beir, "test"), model, Workspace(tmp_path))
    assert result.evaluation.mean["mrr@10"] == 1.0
    assert result.evaluation.mean["recall@100"] == 1.0
