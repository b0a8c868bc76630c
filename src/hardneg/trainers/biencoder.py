"""Shared-encoder training on (query, positive, static hard negatives) batches: STAR and the
sentence-transformers baseline differ only in the loss applied to the same batch.

With ``freeze_documents`` only the query tower trains: positives and negatives are scored with
frozen embeddings (:class:`~hardneg.trainers.frozen.FrozenDocuments`), so the corpus is encoded
once and a step costs a query-side forward and backward only (the DRhard paper's query-encoder
comparison of static against dynamic negatives). The output then pairs the query encoder with its
frozen document encoder, as ADORE's does.

Each rank encodes its slice of the global batch; positives and negatives are gathered from all
ranks (with gradients flowing back to their owners), so every query is scored against the whole
global batch exactly as in a single-process run with the global batch size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, cast

import torch

from hardneg.core.beir import Corpus
from hardneg.core.progress import Progress, no_progress
from hardneg.core.workspace import Workspace
from hardneg.trainers.common import (
    finish,
    load_trainable_encoder,
    require_negatives,
    skips_finished,
    start,
)
from hardneg.trainers.config import TrainingConfig
from hardneg.trainers.data import (
    PAD_ID,
    Batch,
    BatchSchedule,
    TrainExample,
    load_examples,
    negative_mask,
)
from hardneg.trainers.distributed import DistContext, all_reduce_sum, gather_with_grad
from hardneg.trainers.encoding import BiEncoderForward, tokenize
from hardneg.trainers.frozen import (
    FrozenDocuments,
    frozen_document_side,
    training_evaluator,
    write_query_encoder_folder,
)
from hardneg.trainers.loop import LossFn, TrainingTask, train_loop
from hardneg.trainers.losses import mnrl_loss, star_loss
from hardneg.trainers.output import write_model_folder

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

LossKind = Literal["star", "baseline"]


def encode_batch(
    forward: torch.nn.Module,
    model: SentenceTransformer,
    local: Batch,
    config: TrainingConfig,
    device: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Embeddings of this rank's queries (b, dim), positives (b, dim), negatives (b * k, dim)."""
    args = config.model
    groups = [
        tokenize(model, local.queries, args.max_query_length, device, args.query_prompt),
        tokenize(model, local.positives, args.max_doc_length, device, args.doc_prompt),
    ]
    if local.negatives:
        groups.append(
            tokenize(model, local.negatives, args.max_doc_length, device, args.doc_prompt)
        )
    embeddings = forward(groups)
    queries, positives = embeddings[0], embeddings[1]  # (b, dim) each
    negatives = embeddings[2] if local.negatives else positives[:0]  # (b * k, dim)
    return queries, positives, negatives


def batch_loss(
    kind: LossKind,
    batch: Batch,
    queries: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    ctx: DistContext,
    scale: float,
) -> torch.Tensor:
    """This rank's share of the global-batch loss (scaled so DDP's gradient mean is exact)."""
    all_positives = gather_with_grad(positives, ctx)  # (B, dim)
    all_negatives = gather_with_grad(negatives, ctx)  # (B * k, dim)
    docs = torch.cat([all_positives, all_negatives])  # (M, dim), M = B + B * k
    local = len(queries)
    rows = slice(ctx.rank * local, (ctx.rank + 1) * local)
    positive_index = torch.arange(rows.start, rows.stop, device=queries.device)  # (b,)
    if kind == "star":
        mask = negative_mask(batch, rows).to(queries.device)  # (b, M)
        pairs = all_reduce_sum(mask.sum().float(), ctx)  # () valid pairs in the global batch
        return star_loss(queries, docs, positive_index, mask, scale, pairs) * ctx.world_size
    not_padding = torch.tensor([d != PAD_ID for d in batch.doc_ids], device=queries.device)
    candidates = not_padding.unsqueeze(0).expand(local, -1)  # (b, M)
    return mnrl_loss(queries, docs, positive_index, candidates, scale)


def make_loss(
    kind: LossKind,
    schedule: BatchSchedule,
    model: SentenceTransformer,
    config: TrainingConfig,
    ctx: DistContext,
    frozen: FrozenDocuments | None = None,
) -> LossFn:

    def compute(forward: torch.nn.Module, micro_step: int) -> torch.Tensor:
        batch = schedule.batch(micro_step)
        local = batch.shard(ctx.rank, ctx.world_size)
        queries, positives, negatives = encode_sides(forward, model, local, config, ctx, frozen)
        return batch_loss(kind, batch, queries, positives, negatives, ctx, config.train.scale)

    return compute


def encode_sides(
    forward: torch.nn.Module,
    model: SentenceTransformer,
    local: Batch,
    config: TrainingConfig,
    ctx: DistContext,
    frozen: FrozenDocuments | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries (b, dim), positives (b, dim), negatives (b * k, dim): all encoded by the model,
    or with ``frozen`` documents only the queries (the documents looked up)."""
    if frozen is None:
        return encode_batch(forward, model, local, config, ctx.device)
    args = config.model
    features = tokenize(model, local.queries, args.max_query_length, ctx.device, args.query_prompt)
    queries = forward([features])[0]  # (b, dim)
    positives = frozen.lookup(local.positive_ids, ctx.device)  # (b, dim)
    negatives = frozen.lookup(local.negative_ids, ctx.device)  # (b * k, dim)
    return queries, positives, negatives


def _frozen_side(
    config: TrainingConfig,
    workspace: Workspace,
    ctx: DistContext,
    examples: list[TrainExample],
    progress: Progress,
) -> tuple[SentenceTransformer, Corpus, FrozenDocuments]:
    doc_model, corpus, vectors, _ = frozen_document_side(config, workspace, ctx, progress)
    table = FrozenDocuments.for_examples(
        examples, corpus, vectors, doc_model, config.model.doc_prompt
    )
    return doc_model, corpus, table


LossFactory = Callable[
    [BatchSchedule, "SentenceTransformer", TrainingConfig, DistContext, FrozenDocuments | None],
    LossFn,
]


@skips_finished
def train_bi_encoder(
    kind: str,
    config: TrainingConfig,
    workspace: Workspace,
    progress: Progress = no_progress,
    loss: LossFactory | None = None,
) -> dict[str, Any]:
    """Train a shared bi-encoder with ``kind``'s loss (or the one ``loss`` builds, e.g.
    MarginMSE's); returns the run summary."""
    ctx = start(config)
    examples = load_examples(require_negatives(config), config.data.negative_depth)
    schedule = BatchSchedule.for_run(examples, config, ctx.world_size)
    model = load_trainable_encoder(config.model.model, config, ctx.device)
    frozen: FrozenDocuments | None = None
    doc_model, corpus = model, None
    if config.model.freeze_documents:
        doc_model, corpus, frozen = _frozen_side(config, workspace, ctx, examples, progress)
    query_model = model if frozen is not None else None
    evaluator = training_evaluator(config, workspace, doc_model, query_model, corpus, progress)
    task = TrainingTask(
        name=kind,
        forward=BiEncoderForward(model),
        weights=model,
        micro_batches_per_epoch=schedule.batches_per_epoch,
        compute_loss=loss(schedule, model, config, ctx, frozen)
        if loss is not None
        else make_loss(cast(LossKind, kind), schedule, model, config, ctx, frozen),
        evaluator=evaluator,
    )
    result = train_loop(task, config, ctx, progress)
    info: dict[str, Any] = {}
    if ctx.is_main and frozen is not None:
        info = write_query_encoder_folder(kind, config, result, model, doc_model)
    elif ctx.is_main:
        info = write_model_folder(
            config.train.output_dir, lambda folder: model.save(str(folder)), kind, config, result
        )
    finish(config, ctx)
    return info
