"""The ``train`` job: one trainer (STAR, ADORE, baseline or reranker) on a mined-negatives file.

BEIR arguments may name a dataset instead of a folder (``scifact``); it is found in the
workspace or the configured data folders, or downloaded once. Multi-process runs go through
``torchrun -m hardneg.trainers.launch`` with the same config file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardneg.core.progress import Progress, no_progress
from hardneg.core.workspace import Workspace
from hardneg.service.pipelines.data import find_dataset
from hardneg.service.settings import Settings
from hardneg.trainers.config import TRAINER_KINDS, TrainerKind, TrainingConfig
from hardneg.trainers.launch import trainer_for

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainRequest:
    kind: TrainerKind
    config: TrainingConfig


def _resolve(value: Path | None, workspace: Workspace, settings: Settings) -> Path | None:
    if value is None:
        return None
    return find_dataset(str(value), settings)


def resolve_data(
    config: TrainingConfig, workspace: Workspace, settings: Settings
) -> TrainingConfig:
    """The config with BEIR dataset names turned into folders."""
    data = _resolve(config.eval.data, workspace, settings)
    corpus = _resolve(config.data.corpus, workspace, settings)
    overrides: dict[str, object] = {}
    if data is not None:
        overrides["data"] = str(data)
    if corpus is not None:
        overrides["corpus"] = str(corpus)
    return config.replace(**overrides) if overrides else config


def run_training(
    request: TrainRequest, settings: Settings, progress: Progress = no_progress
) -> dict[str, Any]:
    """Train, evaluate before/after and write the model folder; returns the run summary."""
    if request.kind not in TRAINER_KINDS:
        raise ValueError(f"unknown trainer {request.kind!r}; choose one of {TRAINER_KINDS}")
    workspace = Workspace(settings.home)
    config = resolve_data(request.config, workspace, settings)
    if config.train.device is None and settings.device:
        config = config.replace(device=settings.device)
    if config.model.model is None:
        config = config.replace(model=settings.model)
    logger.info("training %s into %s", request.kind, config.train.output_dir)
    return trainer_for(request.kind)(config, workspace, progress)
