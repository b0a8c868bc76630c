"""Cross-encoder (reranker) training from a base model on positives + mined negatives, so that
cross-encoder mining works on domains without a good pretrained reranker.

Each query forms a group (its positive, then k mined negatives) scored jointly by the
cross-encoder; the loss is the group's softmax cross-entropy (localized contrastive estimation,
Gao et al., ECIR 2021). The output is a sentence-transformers ``CrossEncoder`` folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hardneg.core.beir import DataError
from hardneg.core.encoders import resolve_model
from hardneg.core.progress import Progress, no_progress
from hardneg.core.workspace import Workspace
from hardneg.trainers.common import already_finished, finish, require_negatives, start
from hardneg.trainers.config import TrainingConfig
from hardneg.trainers.data import PAD_ID, Batch, BatchSchedule, load_examples
from hardneg.trainers.distributed import DistContext
from hardneg.trainers.encoding import CrossEncoderForward, enable_gradient_checkpointing, tokenize
from hardneg.trainers.evaluation import RerankEvaluator
from hardneg.trainers.loop import LossFn, TrainingTask, train_loop
from hardneg.trainers.losses import listwise_ce_loss
from hardneg.trainers.output import write_model_folder

if TYPE_CHECKING:
    from sentence_transformers.cross_encoder import CrossEncoder

logger = logging.getLogger(__name__)


def group_pairs(local: Batch) -> tuple[list[tuple[str, str]], torch.Tensor]:
    """(query, document) pairs grouped per query, positive first, and their validity (b, 1 + k)."""
    k = local.negatives_per_query
    pairs: list[tuple[str, str]] = []
    valid: list[list[bool]] = []
    for i, query in enumerate(local.queries):
        pairs.append((query, local.positives[i]))
        pairs.extend((query, local.negatives[i * k + j]) for j in range(k))
        valid.append([True] + [local.negative_ids[i * k + j] != PAD_ID for j in range(k)])
    return pairs, torch.tensor(valid, dtype=torch.bool).reshape(len(local), 1 + k)


def make_loss(
    schedule: BatchSchedule, model: CrossEncoder, config: TrainingConfig, ctx: DistContext
) -> LossFn:
    def compute(forward: torch.nn.Module, micro_step: int) -> torch.Tensor:
        local = schedule.batch(micro_step).shard(ctx.rank, ctx.world_size)
        pairs, valid = group_pairs(local)
        features = tokenize(model, pairs, config.model.max_doc_length, ctx.device)
        logits = forward(features).view(valid.shape)  # (b, 1 + k)
        return listwise_ce_loss(logits, valid.to(logits.device))

    return compute


def load_base_cross_encoder(config: TrainingConfig, ctx: DistContext) -> CrossEncoder:
    """A one-logit cross-encoder from a base model; the fresh head is seeded by the config."""
    from sentence_transformers.cross_encoder import CrossEncoder

    torch.manual_seed(config.train.seed)  # the same new head on every rank
    model = CrossEncoder(
        resolve_model(config.model.model),
        num_labels=1,
        max_length=config.model.max_doc_length,
        device=ctx.device,
    )
    torch.manual_seed(config.train.seed + ctx.rank)  # then each rank its own dropout stream
    if config.model.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    return model


def train_reranker(
    config: TrainingConfig, workspace: Workspace, progress: Progress = no_progress
) -> dict[str, Any]:
    """Train a cross-encoder; the CrossEncoder folder lands in ``config.train.output_dir``."""
    done = already_finished(config)
    if done is not None:
        return done
    if config.data.negatives_per_query < 1:
        raise DataError("config", None, "'negatives_per_query' must be >= 1 for a reranker")
    ctx = start(config)
    examples = load_examples(require_negatives(config), config.data.negative_depth)
    schedule = BatchSchedule.for_run(examples, config, ctx.world_size)
    model = load_base_cross_encoder(config, ctx)
    evaluator = None
    if config.eval.data is not None:
        evaluator = RerankEvaluator(
            config.eval.data,
            workspace,
            model,
            config.reranker.rerank_depth,
            progress,
            config.train.seed,
        )
    task = TrainingTask(
        name="reranker",
        forward=CrossEncoderForward(model),
        weights=model,
        micro_batches_per_epoch=schedule.batches_per_epoch,
        compute_loss=make_loss(schedule, model, config, ctx),
        evaluator=evaluator,
    )
    result = train_loop(task, config, ctx, progress)
    info: dict[str, Any] = {}
    if ctx.is_main:

        def save(folder: Path) -> None:
            model.save(str(folder))

        info = write_model_folder(config.train.output_dir, save, "reranker", config, result)
    finish(config, ctx)
    return info
