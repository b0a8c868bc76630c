"""Start-up pieces every trainer shares: process group, seeds, model loading, evaluation data."""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec

import numpy as np
import torch

from hardneg.core.beir import DataError
from hardneg.core.encoders import resolve_model
from hardneg.trainers.config import TrainingConfig
from hardneg.trainers.distributed import DistContext, init_distributed
from hardneg.trainers.encoding import enable_gradient_checkpointing
from hardneg.trainers.output import finished_summary

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def start(config: TrainingConfig) -> DistContext:
    """Join the process group (if under torchrun), then seed this rank's RNG streams."""
    ctx = init_distributed(config.train.device)
    seed_everything(config.train.seed + ctx.rank)
    return ctx


def already_finished(config: TrainingConfig) -> dict[str, Any] | None:
    """The summary of a finished run in the output folder when resuming is allowed."""
    if not config.train.resume:
        return None
    info = finished_summary(config.train.output_dir)
    if info is not None:
        logger.info("%s already holds a finished run; nothing to do", config.train.output_dir)
    return info


P = ParamSpec("P")


def skips_finished(train: Callable[P, dict[str, Any]]) -> Callable[P, dict[str, Any]]:
    """A trainer (taking its :class:`TrainingConfig` among its arguments) that returns the
    summary of the finished run already in its output folder instead of training again."""

    @functools.wraps(train)
    def run(*args: P.args, **kwargs: P.kwargs) -> dict[str, Any]:
        config = next(a for a in (*args, *kwargs.values()) if isinstance(a, TrainingConfig))
        done = already_finished(config)
        return done if done is not None else train(*args, **kwargs)

    return run


def require_negatives(config: TrainingConfig) -> Path:
    path = config.data.negatives
    if path is None:
        raise DataError("config", None, "'negatives' (a mined-negatives JSONL file) is required")
    return path


def load_trainable_encoder(
    name_or_path: str | None, config: TrainingConfig, device: str
) -> SentenceTransformer:
    """A bi-encoder in fp32 (mixed precision comes from autocast), ready to train."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_model(name_or_path), device=device)
    if config.model.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    return model


def model_reference(name_or_path: str | None) -> str:
    """How to name a model in a saved folder: an absolute path if local, else the hub id."""
    if name_or_path is None:
        return "all-MiniLM-L6-v2"
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if path.exists() else name_or_path


def finish(config: TrainingConfig, ctx: DistContext) -> None:
    """After the final model is written: drop the checkpoints unless asked to keep them."""
    from hardneg.trainers.checkpoint import remove_checkpoints
    from hardneg.trainers.distributed import barrier

    barrier(ctx)
    if ctx.is_main and not config.train.keep_checkpoints:
        remove_checkpoints(config.train.output_dir)
