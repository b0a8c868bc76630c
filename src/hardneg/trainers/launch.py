"""Thin driver for ``torchrun`` (and plain ``python -m``): one trainer, one config file.

    torchrun --nproc_per_node 2 -m hardneg.trainers.launch star --config run.yaml \\
        [--home DIR] [--set learning_rate=1e-5 --set max_steps=100]

Every process runs the same command; rank 0 evaluates and writes the model folder.
``hardneg train ...`` (the CLI) runs the same trainers in-process with progress bars.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hardneg.core.progress import Progress
from hardneg.core.spec import parse_assignments as parse_overrides
from hardneg.core.workspace import Workspace
from hardneg.trainers.config import TRAINER_KINDS, TrainingConfig, load_config

logger = logging.getLogger(__name__)

Trainer = Callable[[TrainingConfig, Workspace, Progress], dict[str, Any]]


def trainer_for(kind: str) -> Trainer:
    """The training function of ``kind`` (imported lazily: each pulls in torch models)."""
    if kind == "star":
        from hardneg.trainers.star import train_star

        return train_star
    if kind == "baseline":
        from hardneg.trainers.baseline import train_baseline

        return train_baseline
    if kind == "adore":
        from hardneg.trainers.adore import train_adore

        return train_adore
    if kind == "reranker":
        from hardneg.trainers.reranker import train_reranker

        return train_reranker
    if kind == "margin-mse":
        from hardneg.trainers.margin_mse import train_margin_mse

        return train_margin_mse
    raise ValueError(
        f"unknown trainer {kind!r}; choose star, adore, baseline, reranker or margin-mse"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run one hardneg trainer (torchrun-friendly).")
    parser.add_argument("kind", choices=TRAINER_KINDS)
    parser.add_argument("--config", type=Path, required=True, help="JSON or YAML config file")
    parser.add_argument("--home", type=Path, default=None, help="workspace (default HARDNEG_HOME)")
    parser.add_argument("--set", action="append", default=[], help="override: key=value")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = load_config(args.config, parse_overrides(args.set))
    from hardneg.trainers.distributed import init_distributed, shutdown

    ctx = init_distributed(config.train.device)
    try:
        info = trainer_for(args.kind)(config, Workspace(args.home), _log_progress)
        if ctx.is_main:
            logger.info("finished: %s", json.dumps(info.get("metrics_after")))
    finally:
        shutdown(ctx)


def _log_progress(done: int, total: int, stage: str) -> None:
    logger.debug("%s: %d/%d", stage, done, total)


if __name__ == "__main__":
    main()
