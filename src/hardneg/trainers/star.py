"""STAR: Stable Training Algorithm for dense Retrieval (Zhan et al., "Optimizing Dense Retrieval
Model Training with Hard Negatives", SIGIR 2021).

A shared query/document encoder trained with static hard negatives (read from a mined-negatives
file, e.g. dense retrieval with the warm-up model) plus the other queries' positives as random
negatives; relevant pairs are masked with the qrels and the pairwise loss
``log(1 + exp(s- - s+))`` is averaged over the remaining pairs (see ``losses.star_loss``).
"""

from __future__ import annotations

from typing import Any

from hardneg.core.progress import Progress, no_progress
from hardneg.core.workspace import Workspace
from hardneg.trainers.biencoder import train_bi_encoder
from hardneg.trainers.config import TrainingConfig


def train_star(
    config: TrainingConfig, workspace: Workspace, progress: Progress = no_progress
) -> dict[str, Any]:
    """Train with STAR; the model folder and its summary land in ``config.train.output_dir``."""
    return train_bi_encoder("star", config, workspace, progress)
