"""GPL-style training: a bi-encoder taught a teacher's score margins with MarginMSE.

GPL (Wang et al., "GPL: Generative Pseudo Labeling for Unsupervised Domain Adaptation of Dense
Retrieval", NAACL 2022) trains on (generated query, its passage, a mined negative) triples and
a cross-encoder's scores of both pairs: the student's margin ``s(q, d+) - s(q, d-)`` is
regressed onto the teacher's (``losses.margin_mse_loss``; Hofstätter et al., 2020). The teacher
scores are read from the negatives file (``positive_scores`` / ``negative_scores``, written by
:mod:`hardneg.miners.pair_scores`); a row without them is refused, naming the query.

Batches, checkpoints, evaluation and ``freeze_documents`` (only the query tower trains,
against frozen document embeddings) are those of the other bi-encoder trainers
(:mod:`hardneg.trainers.biencoder`). There are no in-batch negatives: every pair's target is
its own teacher margin.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hardneg.core.beir import DataError
from hardneg.core.negatives import read_mined
from hardneg.core.progress import Progress, no_progress
from hardneg.core.workspace import Workspace
from hardneg.trainers.biencoder import LossFactory, encode_sides, train_bi_encoder
from hardneg.trainers.common import require_negatives
from hardneg.trainers.config import TrainingConfig
from hardneg.trainers.data import PAD_ID, Batch, BatchSchedule
from hardneg.trainers.distributed import DistContext
from hardneg.trainers.frozen import FrozenDocuments
from hardneg.trainers.loop import LossFn
from hardneg.trainers.losses import margin_mse_loss

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

KIND = "margin-mse"
TeacherTable = dict[tuple[str, str], float]


def load_teacher_scores(path: Path) -> TeacherTable:
    """(query id, document id) -> teacher score, for every positive and negative of the file."""
    table: TeacherTable = {}
    for row in read_mined(path):
        ids = (*row.positive_ids, *row.negative_ids)
        scores = (*row.positive_scores, *row.negative_scores)
        if len(scores) != len(ids) or any(s is None for s in scores):
            raise DataError(
                path,
                None,
                f"query {row.query_id!r} lacks teacher scores for its positives and negatives: "
                "score the file first (hardneg.miners.pair_scores)",
            )
        table.update({(row.query_id, d): float(s) for d, s in zip(ids, scores, strict=True)})  # type: ignore[arg-type]
    return table


def teacher_margins(batch: Batch, table: TeacherTable) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, k) teacher margins ``t(q, d+) - t(q, d-)`` of a batch and (b, k) validity."""
    k = batch.negatives_per_query
    margins = torch.zeros(len(batch), k)  # (b, k)
    valid = torch.zeros(len(batch), k, dtype=torch.bool)  # (b, k)
    for i, query_id in enumerate(batch.query_ids):
        positive = table[(query_id, batch.positive_ids[i])]
        for j in range(k):
            doc_id = batch.negative_ids[i * k + j]
            if doc_id == PAD_ID:
                continue
            margins[i, j] = positive - table[(query_id, doc_id)]
            valid[i, j] = True
    return margins, valid


def margin_loss_factory(table: TeacherTable) -> LossFactory:
    """The loss builder :func:`train_bi_encoder` calls with the run's schedule and model."""

    def build(
        schedule: BatchSchedule,
        model: SentenceTransformer,
        config: TrainingConfig,
        ctx: DistContext,
        frozen: FrozenDocuments | None,
    ) -> LossFn:
        k = schedule.negatives_per_query

        def compute(forward: torch.nn.Module, micro_step: int) -> torch.Tensor:
            local = schedule.batch(micro_step).shard(ctx.rank, ctx.world_size)
            queries, positives, negatives = encode_sides(forward, model, local, config, ctx, frozen)
            margins, valid = teacher_margins(local, table)
            grouped = negatives.reshape(len(local), k, -1)  # (b, k, dim)
            return margin_mse_loss(
                queries,
                positives,
                grouped,
                margins.to(queries.device),
                valid.to(queries.device),
                config.train.scale,
            )

        return compute

    return build


def train_margin_mse(
    config: TrainingConfig, workspace: Workspace, progress: Progress = no_progress
) -> dict[str, Any]:
    """Train with MarginMSE on the file's teacher scores; writes the model folder."""
    if config.data.negatives_per_query < 1:
        raise DataError("config", None, "margin-mse needs negatives_per_query >= 1")
    table = load_teacher_scores(require_negatives(config))
    return train_bi_encoder(KIND, config, workspace, progress, loss=margin_loss_factory(table))
