"""Long stages report after every batch, and a callback that raises (the service's
``JobCancelledError``) stops them at that report, leaving no half-written file."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import CrossEncoder, SentenceTransformer

from hardneg.core.beir import Corpus, Document, find_corpus_file, iter_corpus
from hardneg.core.embeddings import EmbeddingStore
from hardneg.core.encoders import encode_texts, load_encoder, resolve_model
from hardneg.miners.cross_encoder import predict

BATCH = 8


class CancelledError(Exception):
    """Stands in for the service's JobCancelledError."""


class Recorder:
    """A progress callback that remembers every report and may cancel at the n-th."""

    def __init__(self, cancel_at: int | None = None) -> None:
        self.reports: list[tuple[int, int, str]] = []
        self.cancel_at = cancel_at

    def __call__(self, done: int, total: int, stage: str) -> None:
        self.reports.append((done, total, stage))
        if self.cancel_at is not None and len(self.reports) == self.cancel_at:
            raise CancelledError

    def steps(self) -> list[int]:
        done = [d for d, _, _ in self.reports]
        return [b - a for a, b in itertools.pairwise(done)]


@pytest.fixture(scope="module")
def model() -> SentenceTransformer:
    return load_encoder(device="cpu", max_length=64)


@pytest.fixture(scope="module")
def corpus(scifact_dir: Path) -> Corpus:
    """60 SciFact documents of varied length (cut to 400 characters to stay quick)."""
    docs = itertools.islice(iter_corpus(find_corpus_file(scifact_dir)), 60)
    return Corpus.from_documents([Document(d.id, d.title, d.text[:400]) for d in docs])


def test_corpus_encoding_reports_every_batch_and_keeps_row_order(
    model: SentenceTransformer, corpus: Corpus, tmp_path: Path
) -> None:
    recorder = Recorder()
    vectors = EmbeddingStore(tmp_path).encode_corpus(
        model, corpus, batch_size=BATCH, progress=recorder
    )
    steps = recorder.steps()
    assert recorder.reports[-1][:2] == (len(corpus), len(corpus))
    assert len(recorder.reports) >= len(corpus) // BATCH
    assert all(0 <= step <= BATCH for step in steps) and max(steps) == BATCH
    # the batches go longest first, but row i is still document i
    one_call = model.encode(corpus.full_texts(), batch_size=BATCH, normalize_embeddings=True)
    np.testing.assert_allclose(vectors, one_call, atol=1e-5)


def test_a_cancel_stops_corpus_encoding_at_that_report_and_leaves_no_file(
    model: SentenceTransformer, corpus: Corpus, tmp_path: Path
) -> None:
    recorder = Recorder(cancel_at=3)  # 0, then two batches
    with pytest.raises(CancelledError):
        EmbeddingStore(tmp_path).encode_corpus(model, corpus, batch_size=BATCH, progress=recorder)
    assert len(recorder.reports) == 3 and recorder.reports[-1][0] == 2 * BATCH
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_query_encoding_reports_every_batch(model: SentenceTransformer, corpus: Corpus) -> None:
    recorder = Recorder()
    texts = [corpus.titles[i] for i in range(len(corpus))]
    vectors = encode_texts(model, texts, BATCH, progress=recorder, stage="encoding queries")
    assert vectors.shape[0] == len(texts)
    assert [d for d, _, _ in recorder.reports][-1] == len(texts)
    assert max(recorder.steps()) <= BATCH and {s for _, _, s in recorder.reports} == {
        "encoding queries"
    }


def test_cross_encoder_scoring_reports_and_cancels_every_batch(corpus: Corpus) -> None:
    scorer = CrossEncoder(resolve_model(None), num_labels=1, max_length=64, device="cpu")
    pairs = [(corpus.titles[i], corpus.texts[i]) for i in range(40)]
    recorder = Recorder()
    scores = predict(scorer, pairs, BATCH, progress=recorder)
    assert scores.shape == (40,)
    assert [d for d, _, _ in recorder.reports] == list(range(0, 41, BATCH))
    cancelling = Recorder(cancel_at=2)
    with pytest.raises(CancelledError):
        predict(scorer, pairs, BATCH, progress=cancelling)
    assert [d for d, _, _ in cancelling.reports] == [0, BATCH]
