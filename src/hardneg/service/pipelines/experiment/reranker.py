"""The cross-encoder the experiment trains when none is given, sized by its own dev loss.

Its queries are the ``reranker`` role (held out from the budget, the validation split and the
probe). They are cut once more, by a seeded shuffle, into the queries it trains on and a dev
share whose listwise loss is measured every few steps: training keeps the checkpoint with the
lowest dev loss and stops once that has not improved for ``reranker_patience`` evaluations, so
``reranker_steps`` is a ceiling, not a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.core.negatives import read_meta, read_mined, write_mined
from hardneg.service.pipelines.experiment.plots import read_history
from hardneg.service.pipelines.experiment.training import Recipe
from hardneg.trainers.config import TrainingConfig


@dataclass(frozen=True)
class RerankerFiles:
    train: Path
    dev: Path
    train_queries: int
    dev_queries: int


def hold_out_dev(mined: Path, share: float, seed: int, folder: Path) -> RerankerFiles:
    """Cut a mined-negatives file by query into ``train.jsonl`` and ``dev.jsonl`` in ``folder``.

    The dev file gets ``round(share * n)`` queries, at least one, and the train file keeps at
    least one; with a single query there is nothing to hold out and a ValueError says so.
    """
    rows = list(read_mined(mined))
    if len(rows) < 2:
        raise ValueError(f"{mined}: {len(rows)} reranker queries, need 2 to hold out a dev share")
    dev_count = min(len(rows) - 1, max(1, round(share * len(rows))))
    order = np.random.default_rng([seed, len(rows)]).permutation(len(rows))
    dev_rows = set(order[:dev_count].tolist())
    meta = read_meta(mined)
    train = [row for i, row in enumerate(rows) if i not in dev_rows]
    dev = [row for i, row in enumerate(rows) if i in dev_rows]
    folder.mkdir(parents=True, exist_ok=True)
    write_mined(folder / "train.jsonl", train, meta | {"reranker_role": "train"})
    write_mined(folder / "dev.jsonl", dev, meta | {"reranker_role": "dev"})
    return RerankerFiles(folder / "train.jsonl", folder / "dev.jsonl", len(train), len(dev))


def reranker_config(
    recipe: Recipe, files: RerankerFiles, folder: Path, seed: int
) -> TrainingConfig:
    """The cross-encoder's training run into ``folder``: the profile's reranker budget, early
    stopping on the dev file's listwise loss."""
    profile = recipe.profile
    return recipe.config(
        str(files.train),
        folder,
        profile.reranker_steps,
        profile.reranker_learning_rate,
        seed,
        rows=files.train_queries,
        negatives_per_query=profile.reranker_negatives,
        max_doc_length=profile.reranker_max_length,
        per_device_batch_size=min(8, files.train_queries),
        freeze_documents=False,
        data=None,
        loss_groups=str(files.dev),
        dev_split="reranker-dev",
        eval_steps=profile.reranker_eval_steps,
        save_steps=profile.save_steps,
        early_stopping_patience=profile.reranker_patience,
        eval_before=False,
        eval_after=False,
    )


def reranker_summary(folder: Path, negatives_per_query: int) -> dict[str, Any]:
    """How far the cross-encoder trained here got: its listwise loss on training batches and on
    its held-out dev queries (by step) against chance, ln(1 + k), and where it stopped."""
    history = read_history(folder)
    losses = [e["loss"] for e in history if e.get("event") == "train"]
    dev = [[e["step"], round(e["loss"], 4)] for e in history if e.get("event") == "eval"]
    return {
        "model": str(folder),
        "first_loss": round(losses[0], 4) if losses else None,
        "final_loss": round(losses[-1], 4) if losses else None,
        "dev_loss": dev,
        "steps": max((e["step"] for e in history), default=0),
        "chance_loss": round(math.log(1 + negatives_per_query), 4),
    }
