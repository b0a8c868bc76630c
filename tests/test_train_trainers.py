"""One real optimization step of each trainer (real MiniLM, CPU, tiny data), the output folders,
and exact resume after an interrupted run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hardneg.core.beir import load_split
from hardneg.core.encoders import load_encoder, model_fingerprint
from hardneg.core.negatives import MinedQuery, write_mined
from hardneg.core.workspace import Workspace
from hardneg.service.pipelines.evaluate import run_evaluation
from hardneg.service.settings import Settings
from hardneg.service.specs import EvaluateSpec
from hardneg.trainers.adore import train_adore
from hardneg.trainers.baseline import train_baseline
from hardneg.trainers.checkpoint import list_checkpoints, load_checkpoint
from hardneg.trainers.config import TrainingConfig, config_from_mapping
from hardneg.trainers.evaluation import evaluate_dense
from hardneg.trainers.output import DUAL_FILE, TRAINING_FILE, load_dual_encoder
from hardneg.trainers.reranker import train_reranker
from hardneg.trainers.star import train_star
from tests.conftest import TINY_DOCS, write_beir

DOCS = {str(d["_id"]): f"{d['title']} {d['text']}" for d in TINY_DOCS}
MINED = [
    ("q1", "which animals descend from wolves", "d2", ["d5", "d1", "d3"]),
    ("q2", "how do plants make sugar from sunlight", "d3", ["d1", "d4"]),
    ("q3", "what comes out of a volcano", "d4", ["d3", "d5"]),
    ("q4", "do cats hunt mice", "d1", ["d2", "d5"]),
]


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Path]:
    data = write_beir(tmp_path / "beir")
    negatives = tmp_path / "mined.jsonl"
    rows = [
        MinedQuery(qid, query, (pos,), (DOCS[pos],), tuple(negs), tuple(DOCS[n] for n in negs))
        for qid, query, pos, negs in MINED
    ]
    write_mined(negatives, rows, {"method": "hand"})
    return {"data": data, "negatives": negatives, "root": tmp_path}


def make_config(setup: dict[str, Path], name: str, **values: object) -> TrainingConfig:
    base: dict[str, object] = {
        "negatives": str(setup["negatives"]),
        "output_dir": str(setup["root"] / name),
        "data": str(setup["data"]),
        "per_device_batch_size": 2,
        "negatives_per_query": 1,
        "max_doc_length": 32,
        "max_steps": 1,
        "warmup_ratio": 0.0,
        "learning_rate": 1e-4,
        "logging_steps": 1,
        "top_k": 4,
        "rerank_depth": 5,
        "seed": 5,
    }
    return config_from_mapping(base | values, "test")


def train_losses(output: Path) -> list[float]:
    lines = (output / "metrics.jsonl").read_text().splitlines()
    return [e["loss"] for e in map(json.loads, lines) if e["event"] == "train"]


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(before[k].cpu(), after[k].cpu()) for k in before)


def check_card(output: Path, kind: str) -> dict[str, Any]:
    card = (output / "README.md").read_text()
    assert f"# {kind} model trained with hardneg" in card
    assert "| ndcg@10 |" in card and '"learning_rate": 0.0001' in card  # config included
    info: dict[str, Any] = json.loads((output / TRAINING_FILE).read_text())
    assert info["finished"] and info["steps"] == 1 and info["trainer"] == kind
    assert set(info["metrics_before"]) >= {"ndcg@10", "recall@100", "mrr@10", "p@10"}
    assert info["metrics_after"] is not None
    assert not list_checkpoints(output)  # removed once the model is saved
    return info


@pytest.mark.parametrize("kind", ["star", "baseline"])
def test_shared_encoder_trainers_take_a_real_step(setup: dict[str, Path], kind: str) -> None:
    from sentence_transformers import SentenceTransformer

    # the baseline run also takes the gradient-checkpointing and accumulation code paths
    extra: dict[str, object] = (
        {} if kind == "star" else {"gradient_checkpointing": True, "gradient_accumulation_steps": 2}
    )
    config = make_config(setup, kind, **extra)
    trainer = train_star if kind == "star" else train_baseline
    trainer(config, Workspace(setup["root"] / "ws"))
    output = config.train.output_dir
    losses = train_losses(output)
    assert len(losses) == 1 and torch.isfinite(torch.tensor(losses)).all() and losses[0] > 0
    trained = SentenceTransformer(str(output), device="cpu")
    assert changed(load_encoder(device="cpu").state_dict(), trained.state_dict())
    check_card(output, kind)


def test_adore_trains_only_the_query_side_and_saves_the_pair(setup: dict[str, Path]) -> None:
    config = make_config(setup, "adore")
    train_adore(config, Workspace(setup["root"] / "ws"))
    output = config.train.output_dir
    assert torch.isfinite(torch.tensor(train_losses(output))).all()
    base = load_encoder(device="cpu")
    query_model, doc_model = load_dual_encoder(output, "cpu")
    assert changed(base.state_dict(), query_model.state_dict())
    assert model_fingerprint(doc_model) == model_fingerprint(base)  # frozen side untouched
    assert json.loads((output / DUAL_FILE).read_text())["document_model"] == "all-MiniLM-L6-v2"
    info = check_card(output, "adore")
    assert "query encoder" in (output / "README.md").read_text()
    assert info["config"]["adore"]["top_k"] == 4
    # `hardneg evaluate --model <adore folder>` encodes each side with its own encoder
    settings = Settings(home=setup["root"] / "ws")
    request = EvaluateSpec(retriever="dense", model=str(output))
    served = run_evaluation(request, str(setup["data"]), settings)
    direct = evaluate_dense(
        load_split(setup["data"], "test"), doc_model, Workspace(setup["root"] / "ws"),
        query_model=query_model,
    )  # fmt: skip
    assert served.evaluation.per_query == direct.evaluation.per_query
    np.testing.assert_allclose(served.results.scores, direct.results.scores, rtol=1e-5)
    same_model_both_sides = evaluate_dense(
        load_split(setup["data"], "test"), query_model, Workspace(setup["root"] / "ws")
    )
    assert not np.allclose(served.results.scores, same_model_both_sides.results.scores)


def test_dual_encoder_refuses_a_changed_document_encoder(setup: dict[str, Path]) -> None:
    doc_folder = setup["root"] / "doc-encoder"
    load_encoder(device="cpu").save(str(doc_folder))
    config = make_config(setup, "adore-pair", document_model=str(doc_folder), eval_before=False)
    train_adore(config, Workspace(setup["root"] / "ws"))
    load_dual_encoder(config.train.output_dir, "cpu")  # loads while the encoder is unchanged
    other = load_encoder(device="cpu")
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    other.save(str(doc_folder))
    with pytest.raises(ValueError, match="not the one this query encoder was trained against"):
        load_dual_encoder(config.train.output_dir, "cpu")


def test_reranker_trains_a_loadable_cross_encoder(setup: dict[str, Path]) -> None:
    from sentence_transformers.cross_encoder import CrossEncoder

    config = make_config(setup, "reranker", negatives_per_query=2)
    train_reranker(config, Workspace(setup["root"] / "ws"))
    output = config.train.output_dir
    assert torch.isfinite(torch.tensor(train_losses(output))).all()
    check_card(output, "reranker")
    reranker = CrossEncoder(str(output), device="cpu")
    scores = reranker.predict([("do cats hunt mice", DOCS["d1"]), ("volcano", DOCS["d4"])])
    assert len(scores) == 2


class KilledError(Exception):
    """Stands in for a kill: raised by the progress callback after a checkpoint."""


def kill_after_two(done: int, total: int, stage: str) -> None:
    """A progress callback that stops the run once its second training step is done."""
    if stage.startswith("training") and done == 2:
        raise KilledError


def test_resume_after_interruption_equals_uninterrupted(setup: dict[str, Path]) -> None:
    """With dropout on, so the restored RNG streams matter, not only the weights."""
    from sentence_transformers import SentenceTransformer

    workspace = Workspace(setup["root"] / "ws")
    common: dict[str, object] = {"max_steps": 4, "save_steps": 2, "data": None, "dropout": True}
    straight = make_config(setup, "straight", **common)
    train_star(straight, workspace)

    resumed = make_config(setup, "resumed", **common)

    with pytest.raises(KilledError):
        train_star(resumed, workspace, kill_after_two)
    output = resumed.train.output_dir
    assert [step for step, _ in list_checkpoints(output)] == [2]
    assert not (output / TRAINING_FILE).exists()  # no half-finished model folder
    info = train_star(resumed, workspace)
    assert info["resumed_from"] == 2 and info["steps"] == 4
    a = SentenceTransformer(str(straight.train.output_dir), device="cpu").state_dict()
    b = SentenceTransformer(str(output), device="cpu").state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
    assert train_losses(straight.train.output_dir) == pytest.approx(train_losses(output))
    # a finished run is not trained again
    assert train_star(resumed, workspace)["resumed_from"] == 2


def test_resumed_run_keeps_the_best_dev_step_of_before_the_interruption(
    setup: dict[str, Path],
) -> None:
    """The best weights travel inside the checkpoint: a run killed after step 2 of 4 and resumed
    picks the same best dev step and ends with the same weights as one that was not killed."""
    from sentence_transformers import SentenceTransformer

    write_beir(setup["data"], split="dev")
    workspace = Workspace(setup["root"] / "ws")
    common: dict[str, object] = {
        "max_steps": 4, "save_steps": 2, "eval_steps": 1, "eval_corpus_size": 4,
        "learning_rate": 3e-4, "eval_before": False, "eval_after": False,
    }  # fmt: skip
    straight = train_star(make_config(setup, "straight-dev", **common), workspace)
    resumed = make_config(setup, "resumed-dev", **common)

    with pytest.raises(KilledError):
        train_star(resumed, workspace, kill_after_two)
    info = train_star(resumed, workspace)
    assert info["resumed_from"] == 2 and info["best_step"] == straight["best_step"]
    a = SentenceTransformer(str(setup["root"] / "straight-dev"), device="cpu").state_dict()
    b = SentenceTransformer(str(resumed.train.output_dir), device="cpu").state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)


def test_eval_steps_on_dev_keep_the_best_checkpoint(setup: dict[str, Path]) -> None:
    write_beir(setup["data"], split="dev")  # the tiny folder now has a dev split too
    config = make_config(
        setup,
        "best",
        max_steps=2,
        eval_steps=1,
        eval_corpus_size=4,
        keep_checkpoints=True,
        save_steps=1,
    )
    info = train_star(config, Workspace(setup["root"] / "ws"))
    output = config.train.output_dir
    history = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    evals = [(e["phase"], e["split"], e["corpus_size"]) for e in history if e["event"] == "eval"]
    # every eval_steps, and at the last step too, so the end of training competes for the best
    assert evals == [
        ("before", "test", "full"),
        ("step", "dev", 4),
        ("step", "dev", 4),
        ("after", "test", "full"),
    ]
    dev = [e["ndcg@10"] for e in history if e["event"] == "eval" and e["phase"] == "step"]
    assert info["best_step"] == (1 if dev[0] >= dev[1] else 2)
    from sentence_transformers import SentenceTransformer

    final = SentenceTransformer(str(output), device="cpu").state_dict()
    payload = load_checkpoint(output / "checkpoints" / "checkpoint-00000002")[1]
    last = payload["weights"]
    # an older best step's weights travel inside the last checkpoint; the last step's are its own
    assert (payload["best"] is None) == (info["best_step"] == 2)
    best = last if payload["best"] is None else payload["best"]
    assert all(torch.equal(final[k], best[k]) for k in best)  # the model is the best step's
    assert changed(best, last) == (info["best_step"] == 1)
