"""Cross-encoder (reranker) training from a base model on positives + mined negatives, so that
cross-encoder mining works on domains without a good pretrained reranker.

Each query forms a group (its positive, then k mined negatives) scored jointly by the
cross-encoder; the loss is the group's softmax cross-entropy (localized contrastive estimation,
Gao et al., ECIR 2021). The output is a sentence-transformers ``CrossEncoder`` folder.

With ``eval.loss_groups`` (mined negatives of held-out dev queries) the same loss on those fixed
groups is the dev metric: the best checkpoint is the one with the lowest dev loss, and
``eval.early_stopping_patience`` ends training once it stops improving, so the step count is a
ceiling rather than a guess.
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
from hardneg.trainers.common import finish, require_negatives, skips_finished, start
from hardneg.trainers.config import TrainingConfig
from hardneg.trainers.data import PAD_ID, Batch, BatchSchedule, load_examples
from hardneg.trainers.distributed import DistContext
from hardneg.trainers.encoding import (
    CrossEncoderForward,
    enable_gradient_checkpointing,
    eval_mode,
    tokenize,
)
from hardneg.trainers.evaluation import RerankEvaluator
from hardneg.trainers.loop import LossFn, Selection, TrainingTask, train_loop
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


DEV_LOSS = "loss"


class GroupLossEvaluator:
    """Mean listwise loss of the cross-encoder on fixed dev groups (lower is better).

    The groups are the dev queries of ``path``, each with its positive and ``k`` negatives drawn
    once (seeded), scored in batches of ``batch_size`` queries without gradients.
    """

    selection = Selection(DEV_LOSS, higher_is_better=False)

    def __init__(
        self, path: Path, model: CrossEncoder, config: TrainingConfig, split: str, device: str
    ) -> None:
        examples = load_examples(path, config.data.negative_depth)
        if not examples:
            raise DataError(path, None, "no dev queries to compute the reranker's dev loss on")
        k = config.data.negatives_per_query
        size = min(config.train.per_device_batch_size, len(examples))
        schedule = BatchSchedule(examples, size, k, config.train.seed)
        self.batches = [schedule.batch(i) for i in range(schedule.batches_per_epoch)]
        self.model, self.max_length, self.split, self.device = (
            model, config.model.max_doc_length, split, device,
        )  # fmt: skip

    def splits(self) -> set[str]:
        return {self.split}

    def __call__(self, split: str, corpus_size: int = 0) -> dict[str, float]:
        forward = CrossEncoderForward(self.model)
        total, rows = 0.0, 0
        with eval_mode(self.model), torch.no_grad():
            for batch in self.batches:
                pairs, valid = group_pairs(batch)
                features = tokenize(self.model, pairs, self.max_length, self.device)
                logits = forward(features).view(valid.shape)  # (b, 1 + k)
                total += float(listwise_ce_loss(logits, valid.to(logits.device))) * len(batch)
                rows += len(batch)
        return {DEV_LOSS: total / rows}


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


@skips_finished
def train_reranker(
    config: TrainingConfig, workspace: Workspace, progress: Progress = no_progress
) -> dict[str, Any]:
    """Train a cross-encoder; the CrossEncoder folder lands in ``config.train.output_dir``."""
    if config.data.negatives_per_query < 1:
        raise DataError("config", None, "'negatives_per_query' must be >= 1 for a reranker")
    ctx = start(config)
    examples = load_examples(require_negatives(config), config.data.negative_depth)
    schedule = BatchSchedule.for_run(examples, config, ctx.world_size)
    model = load_base_cross_encoder(config, ctx)
    evaluator: GroupLossEvaluator | RerankEvaluator | None = None
    selection = Selection()
    if config.eval.loss_groups is not None:
        split = config.eval.dev_split or "dev"
        evaluator = GroupLossEvaluator(config.eval.loss_groups, model, config, split, ctx.device)
        selection = evaluator.selection
    elif config.eval.data is not None:
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
        selection=selection,
    )
    result = train_loop(task, config, ctx, progress)
    info: dict[str, Any] = {}
    if ctx.is_main:

        def save(folder: Path) -> None:
            model.save(str(folder))

        info = write_model_folder(config.train.output_dir, save, "reranker", config, result)
    finish(config, ctx)
    return info
