"""Early stopping on a dev metric, shown on the reranker's dev loss (real MiniLM cross-encoder,
CPU, tiny data), and the experiment's held-out dev share of reranker queries."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from hardneg.core.negatives import MinedQuery, read_mined, write_mined
from hardneg.core.workspace import Workspace
from hardneg.service.pipelines.experiment.reranker import hold_out_dev
from hardneg.trainers.checkpoint import load_checkpoint
from hardneg.trainers.reranker import DEV_LOSS, GroupLossEvaluator, train_reranker
from tests.test_train_trainers import DOCS, make_config, setup  # noqa: F401 (fixture)


def _write(path: Path, rows: list[tuple[str, str, str, list[str]]]) -> Path:
    mined = [
        MinedQuery(qid, query, (pos,), (DOCS[pos],), tuple(negs), tuple(DOCS[n] for n in negs))
        for qid, query, pos, negs in rows
    ]
    write_mined(path, mined, {"method": "hand"})
    return path


def _history(output: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


def test_dev_loss_that_gets_worse_stops_training_and_keeps_the_best(
    setup: dict[str, Path],  # noqa: F811
) -> None:
    # dev groups that contradict the training pairs: d2 is the training positive for the wolf
    # query and the dev negative, so learning the training data raises the dev loss
    dev = _write(
        setup["root"] / "dev.jsonl",
        [
            ("q1", "which animals descend from wolves", "d5", ["d2"]),
            ("q4", "do cats hunt mice", "d2", ["d1"]),
        ],
    )
    config = make_config(
        setup,
        "early",
        data=None,
        negatives_per_query=1,
        max_steps=8,
        learning_rate=3e-4,
        loss_groups=str(dev),
        dev_split="reranker-dev",
        eval_steps=1,
        save_steps=1,
        keep_checkpoints=True,
        early_stopping_patience=1,
        eval_before=False,
        eval_after=False,
    )
    workspace = Workspace(setup["root"] / "ws")
    info = train_reranker(config, workspace)
    output = config.train.output_dir
    evals = [e for e in _history(output) if e["event"] == "eval"]
    losses = [float(str(e[DEV_LOSS])) for e in evals]
    assert all(e["split"] == "reranker-dev" for e in evals)
    stopped = int(str(evals[-1]["step"]))
    assert stopped < 8, f"dev losses {losses} never stopped training"
    assert losses[-1] >= min(losses[:-1])  # the evaluation that ended it was no new best
    assert info["steps"] == stopped and info["best_step"] < stopped
    # the saved model is the best dev checkpoint, not the last step
    from sentence_transformers.cross_encoder import CrossEncoder

    final = CrossEncoder(str(output), device="cpu").state_dict()
    last, payload = load_checkpoint(output / "checkpoints" / f"checkpoint-{stopped:08d}")
    best = payload["best"]  # the best step's weights travel inside the checkpoint that names them
    assert set(final) == set(best) and all(torch.equal(final[k], best[k]) for k in best)
    assert last.stopped_early and last.step == stopped
    # a rerun of the finished job does not train on
    assert train_reranker(config, workspace)["steps"] == stopped


def test_group_loss_is_chance_for_identical_scores(setup: dict[str, Path]) -> None:  # noqa: F811
    """Equal logits for the positive and k negatives give the listwise loss ln(1 + k)."""
    import math

    from hardneg.trainers.distributed import DistContext
    from hardneg.trainers.reranker import load_base_cross_encoder

    same = setup["root"] / "same.jsonl"
    text = DOCS["d2"]  # three ids, one text: the model cannot tell them apart
    row = MinedQuery("q1", "wolves", ("d2",), (text,), ("x1", "x2"), (text, text))
    write_mined(same, [row], {"method": "hand"})
    config = make_config(
        setup, "same", negatives_per_query=2, loss_groups=str(same), per_device_batch_size=1
    )
    model = load_base_cross_encoder(config, DistContext())
    value = GroupLossEvaluator(same, model, config, "dev", "cpu")("dev")[DEV_LOSS]
    assert math.isclose(value, math.log(3), rel_tol=1e-5)


def test_hold_out_dev_is_a_seeded_disjoint_cut(tmp_path: Path) -> None:
    rows = [(f"q{i}", f"query {i}", "d1", ["d2"]) for i in range(10)]
    mined = _write(tmp_path / "reranker.jsonl", rows)
    first = hold_out_dev(mined, 0.2, seed=13, folder=tmp_path / "a")
    again = hold_out_dev(mined, 0.2, seed=13, folder=tmp_path / "b")
    other = hold_out_dev(mined, 0.2, seed=14, folder=tmp_path / "c")
    train = [r.query_id for r in read_mined(first.train)]
    dev = [r.query_id for r in read_mined(first.dev)]
    assert (first.train_queries, first.dev_queries) == (8, 2) and len(train) == 8
    assert not set(train) & set(dev) and set(train) | set(dev) == {r[0] for r in rows}
    assert dev == [r.query_id for r in read_mined(again.dev)]
    assert other.dev_queries == 2  # another seed, another cut of the same size
