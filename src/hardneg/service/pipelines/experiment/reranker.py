"""The cross-encoder the experiment trains when none is given, sized by its own dev loss.

Its queries are the ``reranker`` role (held out from the budget, the validation split and the
probe). They are cut once more, by a seeded shuffle, into the queries it trains on and a dev
share whose listwise loss is measured every few steps: training keeps the checkpoint with the
lowest dev loss and stops once that has not improved for ``reranker_patience`` evaluations, so
``reranker_steps`` is a ceiling, not a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hardneg.core.negatives import read_meta, read_mined, write_mined


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
