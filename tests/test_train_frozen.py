"""STAR with a frozen document side: only the query tower trains, documents (corpus rows and
written negatives alike) are scored with the frozen encoder's embeddings, and the output pairs the
query encoder with that encoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from hardneg.core.beir import find_corpus_file, load_corpus
from hardneg.core.encoders import encode_texts, load_encoder, model_fingerprint
from hardneg.core.negatives import MinedQuery, write_mined
from hardneg.core.workspace import Workspace
from hardneg.trainers.config import config_from_mapping
from hardneg.trainers.data import PAD_ID, TrainExample
from hardneg.trainers.frozen import FrozenDocuments
from hardneg.trainers.output import DUAL_FILE, load_dual_encoder
from hardneg.trainers.star import train_star
from tests.conftest import TINY_DOCS, write_beir

DOCS = {str(d["_id"]): f"{d['title']} {d['text']}" for d in TINY_DOCS}
WRITTEN = "Wolves were once kept as pets by ancient farmers, some historians claim."


def test_frozen_documents_use_corpus_rows_and_encode_the_rest(tmp_path: Path) -> None:
    corpus = load_corpus(find_corpus_file(write_beir(tmp_path / "beir")))
    model = load_encoder()
    vectors = encode_texts(model, corpus.full_texts())  # (5, dim)
    example = TrainExample("q1", "wolves", ("d2",), (DOCS["d2"],), ("gen:1", "d5"), (WRITTEN, ""))
    table = FrozenDocuments.for_examples([example], corpus, vectors, model)
    assert set(table.extra) == {"gen:1"}  # only the text outside the corpus was encoded
    found = table.lookup(["d5", "gen:1", PAD_ID], "cpu").numpy()  # (3, dim)
    np.testing.assert_allclose(found[0], vectors[corpus.position("d5")])
    np.testing.assert_allclose(found[1], encode_texts(model, [WRITTEN])[0], atol=1e-5)
    assert not found[2].any()


def test_star_with_frozen_documents_trains_the_query_tower_only(tmp_path: Path) -> None:
    data = write_beir(tmp_path / "beir")
    negatives = tmp_path / "mined.jsonl"
    rows = [
        MinedQuery(
            "q1",
            "which animals descend from wolves",
            ("d2",),
            (DOCS["d2"],),
            ("gen:1", "d5"),
            (WRITTEN, DOCS["d5"]),
        ),
        MinedQuery(
            "q2",
            "how do plants make sugar from sunlight",
            ("d3",),
            (DOCS["d3"],),
            ("d1",),
            (DOCS["d1"],),
        ),
    ]
    write_mined(negatives, rows, {"method": "hand"})
    config = config_from_mapping(
        {
            "negatives": str(negatives),
            "output_dir": str(tmp_path / "star"),
            "data": str(data),
            "freeze_documents": True,
            "per_device_batch_size": 2,
            "negatives_per_query": 2,
            "max_steps": 2,
            "warmup_ratio": 0.0,
            "learning_rate": 1e-3,
            "logging_steps": 1,
            "seed": 1,
        },
        "test",
    )
    base = load_encoder()
    info = train_star(config, Workspace(tmp_path / "home"))
    assert info["steps"] == 2 and info["metrics_after"] is not None
    dual = json.loads((tmp_path / "star" / DUAL_FILE).read_text())
    assert dual["fingerprint"] == model_fingerprint(base)  # documents: the untouched base model
    query_model, doc_model = load_dual_encoder(tmp_path / "star")
    assert model_fingerprint(doc_model) == model_fingerprint(base)
    trained = dict(query_model.named_parameters())
    assert any(not torch.equal(p, trained[name]) for name, p in base.named_parameters()), (
        "the query tower should have moved"
    )


def test_frozen_documents_run_by_int8_are_the_ones_evaluation_loads(tmp_path: Path) -> None:
    """``document_backend``: training scores against the int8 graph's corpus embeddings, the
    folder records the backend beside the torch weights' fingerprint, and loading the pair runs
    the documents by int8 again, so evaluation meets the embeddings training used."""
    from hardneg.core.backends import exported_fingerprint, model_backend
    from hardneg.core.embeddings import EmbeddingKey

    data = write_beir(tmp_path / "beir")
    negatives = tmp_path / "mined.jsonl"
    row = MinedQuery(
        "q1", "which animals descend from wolves", ("d2",), (DOCS["d2"],), ("d5",), (DOCS["d5"],)
    )
    write_mined(negatives, [row], {"method": "hand"})
    config = config_from_mapping(
        {
            "negatives": str(negatives),
            "output_dir": str(tmp_path / "star"),
            "data": str(data),
            "freeze_documents": True,
            "document_backend": "onnx-int8",
            "per_device_batch_size": 1,
            "max_steps": 1,
            "seed": 1,
        },
        "test",
    )
    workspace = Workspace(tmp_path / "home")
    base = model_fingerprint(load_encoder())
    train_star(config, workspace)
    dual = json.loads((tmp_path / "star" / DUAL_FILE).read_text())
    assert dual["fingerprint"] == base and dual["document_backend"] == "onnx-int8"
    _, doc_model = load_dual_encoder(tmp_path / "star", "cpu", workspace.encoder_exports)
    assert model_backend(doc_model) == "onnx-int8"
    assert model_fingerprint(doc_model) == exported_fingerprint(base, "onnx-int8")
    corpus = load_corpus(find_corpus_file(data))
    stored = workspace.embeddings.load(EmbeddingKey.for_model(corpus, doc_model))
    assert stored is not None  # training stored the int8 corpus under the key evaluation asks
    fresh = encode_texts(doc_model, corpus.full_texts())
    torch_vectors = encode_texts(load_encoder(), corpus.full_texts())
    np.testing.assert_allclose(stored, fresh, atol=1e-5)
    assert not np.allclose(stored, torch_vectors, atol=1e-5)  # int8 is not fp32
