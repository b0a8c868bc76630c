"""The comparison anchor: the sentence-transformers recipe, MultipleNegativesRankingLoss over
in-batch positives and mined hard negatives (softmax cross-entropy, cosine x 20), with the same
batches, negatives and optimizer as STAR so the two differ only in the loss."""

from __future__ import annotations

from typing import Any

from hardneg.core.progress import Progress, no_progress
from hardneg.core.workspace import Workspace
from hardneg.trainers.biencoder import train_bi_encoder
from hardneg.trainers.config import TrainingConfig


def train_baseline(
    config: TrainingConfig, workspace: Workspace, progress: Progress = no_progress
) -> dict[str, Any]:
    """Train with MultipleNegativesRankingLoss; output as for STAR."""
    return train_bi_encoder("baseline", config, workspace, progress)
