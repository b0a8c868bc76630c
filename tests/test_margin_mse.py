"""MarginMSE (GPL): the loss by hand, teacher scores written by the miner-side scorer, and real
training steps of the trainer on them (real MiniLM, real BM25, CPU, tiny data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from hardneg.core.beir import DataError, find_corpus_file, load_corpus
from hardneg.core.bm25 import BM25Index, BM25Params
from hardneg.core.encoders import load_encoder
from hardneg.core.negatives import MinedQuery, read_mined, write_mined
from hardneg.core.workspace import Workspace
from hardneg.miners.pair_scores import HybridScorer, Pairs, score_mined_file
from hardneg.service.pipelines.evaluate import load_models
from hardneg.trainers.config import config_from_mapping
from hardneg.trainers.losses import margin_mse_loss
from hardneg.trainers.margin_mse import load_teacher_scores, train_margin_mse
from hardneg.trainers.output import TRAINING_FILE
from tests.conftest import TINY_DOCS, write_beir

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DOCS = {str(d["_id"]): f"{d['title']} {d['text']}" for d in TINY_DOCS}


def test_margin_mse_matches_hand_computation() -> None:
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    positives = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    negatives = torch.tensor([[[0.0, 1.0], [0.8, 0.6]], [[1.0, 0.0], [0.0, 1.0]]])  # (2, 2, 2)
    teacher = torch.tensor([[2.0, 0.5], [-1.0, 0.0]])
    # student margins: q1: 1-0=1, 1-.8=.2 ; q2: .8-0=.8, .8-1=-.2
    errors = [(1 - 2.0) ** 2, (0.2 - 0.5) ** 2, (0.8 + 1.0) ** 2, (-0.2 - 0.0) ** 2]
    loss = margin_mse_loss(queries, positives, negatives, teacher)
    assert loss.item() == pytest.approx(sum(errors) / 4)
    # scale multiplies the student's scores (not the teacher's)
    scaled = margin_mse_loss(queries, positives, negatives, teacher, scale=2.0)
    errors2 = [(2 - 2.0) ** 2, (0.4 - 0.5) ** 2, (1.6 + 1.0) ** 2, (-0.4) ** 2]
    assert scaled.item() == pytest.approx(sum(errors2) / 4)


def test_padding_negatives_neither_count_nor_get_gradient() -> None:
    queries = torch.tensor([[1.0, 0.0]], requires_grad=True)
    positives = torch.tensor([[1.0, 0.0]])
    negatives = torch.tensor([[[0.0, 1.0], [5.0, 5.0]]], requires_grad=True)
    teacher = torch.tensor([[0.5, 100.0]])
    valid = torch.tensor([[True, False]])
    loss = margin_mse_loss(queries, positives, negatives, teacher, valid)
    assert loss.item() == pytest.approx((1.0 - 0.5) ** 2)
    loss.backward()
    assert negatives.grad is not None and torch.all(negatives.grad[0, 1] == 0)
    # a student that already matches the teacher has nothing to learn
    exact = margin_mse_loss(queries, positives, negatives, torch.tensor([[1.0, 0.0]]), valid)
    assert exact.item() == 0.0


def _mined(tmp_path: Path) -> Path:
    rows = [
        MinedQuery("q1", "which animals descend from wolves", ("d2",), (DOCS["d2"],),
                   ("d5", "d1"), (DOCS["d5"], DOCS["d1"]), (3.1,), (0.5, 0.2), "bm25"),
        MinedQuery("q2", "how do plants make sugar from sunlight", ("d3",), (DOCS["d3"],),
                   ("d1", "d4"), (DOCS["d1"], DOCS["d4"]), (2.0,), (0.1, 0.0), "bm25"),
        MinedQuery("q3", "what comes out of a volcano", ("d4",), (DOCS["d4"],),
                   ("d3",), (DOCS["d3"],), (1.0,), (0.3,), "bm25"),
        MinedQuery("q4", "do cats hunt mice", ("d1",), (DOCS["d1"],),
                   ("d2", "d5"), (DOCS["d2"], DOCS["d5"]), (1.5,), (0.4, 0.1), "bm25"),
    ]  # fmt: skip
    path = tmp_path / "mined" / "mined.jsonl"
    write_mined(path, rows, {"method": "bm25"})
    return path


@pytest.fixture
def scored(tmp_path: Path) -> dict[str, Path]:
    data = write_beir(tmp_path / "beir")
    corpus = load_corpus(find_corpus_file(data))
    index = BM25Index.build(corpus, BM25Params())
    scorer = HybridScorer(load_encoder(device="cpu"), index, corpus, weight=1.0, scale=20.0)
    exports = score_mined_file(_mined(tmp_path), scorer, tmp_path / "scored")
    return {"data": data, "mined": exports.mined, "root": tmp_path}


def test_the_scorer_writes_teacher_scores_in_both_conventions(scored: dict[str, Path]) -> None:
    rows = list(read_mined(scored["mined"]))
    assert [r.query_id for r in rows] == ["q1", "q2", "q3", "q4"]
    first = rows[0]
    # the mining scores were replaced by the teacher's, every pair scored
    assert first.positive_scores != (3.1,) and len(first.negative_scores) == 2
    assert all(isinstance(s, float) for r in rows for s in (*r.positive_scores, *r.negative_scores))
    # the true passage outscores the wrong ones for the volcano query
    volcano = rows[2]
    assert volcano.positive_scores[0] > volcano.negative_scores[0]
    meta = json.loads(scored["mined"].with_name("mined.meta.json").read_text())
    assert meta["teacher"]["scorer"] == "hybrid" and meta["method"] == "bm25"
    ntuple = [json.loads(x) for x in (scored["root"] / "scored" / "ntuple.jsonl").open()]
    # sentence-transformers' output_scores convention: [positive, negative_1, negative_2]
    assert ntuple[0]["scores"] == pytest.approx([*first.positive_scores, *first.negative_scores])


def test_hybrid_teacher_without_bm25_is_the_students_own_score(tmp_path: Path) -> None:
    data = write_beir(tmp_path / "beir")
    corpus = load_corpus(find_corpus_file(data))
    model = load_encoder(device="cpu")
    scorer = HybridScorer(model, BM25Index.build(corpus, BM25Params()), corpus, weight=0.0)
    pairs = Pairs(("do cats hunt mice",), ("d1",), (DOCS["d1"],))
    cosine = model.encode(["do cats hunt mice", DOCS["d1"]], normalize_embeddings=True)
    expected = 20.0 * float(np.dot(cosine[0], cosine[1]))
    assert scorer(pairs, lambda *_: None)[0] == pytest.approx(expected, abs=1e-4)


def test_the_trainer_refuses_a_file_without_teacher_scores(tmp_path: Path) -> None:
    rows = [MinedQuery("q1", "q", ("d1",), ("t",), ("d2",), ("u",), (1.0,), (None,))]
    path = tmp_path / "mined.jsonl"
    write_mined(path, rows, {})
    with pytest.raises(DataError, match="'q1' lacks teacher scores"):
        load_teacher_scores(path)


@pytest.mark.parametrize("freeze", [False, True])
def test_margin_mse_trains_on_the_teacher_margins(scored: dict[str, Path], freeze: bool) -> None:
    output = scored["root"] / f"model-{freeze}"
    config = config_from_mapping(
        {
            "negatives": str(scored["mined"]),
            "output_dir": str(output),
            "data": str(scored["data"]),
            "corpus": str(scored["data"]),
            "freeze_documents": freeze,
            "per_device_batch_size": 2,
            "negatives_per_query": 2,
            "max_doc_length": 32,
            "max_steps": 8,
            "warmup_ratio": 0.0,
            "learning_rate": 3e-4,
            "logging_steps": 1,
            "seed": 3,
        },
        "test",
    )
    train_margin_mse(config, Workspace(scored["root"] / "ws"))
    info = json.loads((output / TRAINING_FILE).read_text())
    assert info["finished"] and info["trainer"] == "margin-mse" and info["steps"] == 8
    losses = [
        e["loss"]
        for e in map(json.loads, (output / "metrics.jsonl").read_text().splitlines())
        if e["event"] == "train"
    ]
    assert len(losses) == 8 and all(np.isfinite(losses)) and losses[0] > 0
    # the trained student's margins are closer to the teacher's over the whole file
    base = load_encoder(device="cpu")
    query_model, doc_model = load_models(str(output), "cpu", "torch", Workspace(output.parent))
    assert (doc_model is not query_model) == freeze
    before = file_loss(scored["mined"], base, base)
    after = file_loss(scored["mined"], query_model, doc_model)
    assert after < 0.9 * before, (before, after)


def file_loss(
    path: Path, query_model: SentenceTransformer, doc_model: SentenceTransformer
) -> float:
    """MarginMSE of every (query, positive, negative) of the file, scale 20."""
    total, count = 0.0, 0
    for row in read_mined(path):
        q = torch.tensor(query_model.encode([row.query], normalize_embeddings=True))  # (1, dim)
        p = torch.tensor(doc_model.encode(list(row.positives[:1]), normalize_embeddings=True))
        n = torch.tensor(doc_model.encode(list(row.negatives), normalize_embeddings=True))
        margins = torch.tensor(
            [[row.positive_scores[0] - s for s in row.negative_scores]]  # type: ignore[operator]
        )
        loss = margin_mse_loss(q, p, n.unsqueeze(0), margins, scale=20.0)
        total += loss.item() * len(row.negatives)
        count += len(row.negatives)
    return total / count
