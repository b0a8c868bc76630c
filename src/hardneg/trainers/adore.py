"""ADORE: Algorithm for Directly Optimizing Ranking pErformance (Zhan et al., SIGIR 2021).

The document embeddings of a given encoder (typically a STAR model) are computed once and frozen
in a FAISS index. Only the query encoder trains: at every step it retrieves the top-K documents
for its queries with its *current* weights; those are the dynamic hard negatives (positives that
were not retrieved are appended), and the LambdaLoss-weighted pairwise loss of
``losses.adore_loss`` is applied. The output is a query encoder folder that names its frozen
document encoder (``hardneg_dual_encoder.json``); ``output.load_dual_encoder`` loads both.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from hardneg.core.beir import Corpus, DataError
from hardneg.core.dense import DenseIndex
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
from hardneg.trainers.data import BatchSchedule, TrainExample, load_examples
from hardneg.trainers.distributed import DistContext
from hardneg.trainers.encoding import BiEncoderForward, tokenize
from hardneg.trainers.frozen import (
    document_model_name,
    frozen_document_side,
    training_evaluator,
    write_query_encoder_folder,
)
from hardneg.trainers.loop import LossFn, TrainingTask, train_loop
from hardneg.trainers.losses import adore_loss

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidates:
    """Each query's retrieved list with its missed positives appended, padded to one width."""

    positions: npt.NDArray[np.int64]  # (b, K') corpus rows, -1 for padding
    relevant: npt.NDArray[np.bool_]  # (b, K')
    ranks: npt.NDArray[np.int64]  # (b, K') 1-based rank in the list
    valid: npt.NDArray[np.bool_]  # (b, K')


def dynamic_candidates(
    retrieved: npt.NDArray[np.int64], positives: Sequence[Sequence[int]]
) -> Candidates:
    """Candidates from ``retrieved`` (b, K) corpus rows (-1 padding) and each query's positives.

    Retrieved documents keep their rank 1..K; positives missing from the list are appended with
    ranks after it (so with a cut-off <= K their own gain is zero, as in ADORE).
    """
    rows, depth = retrieved.shape
    missing = [
        [p for p in pos if p not in set(retrieved[i].tolist())] for i, pos in enumerate(positives)
    ]
    width = depth + max((len(m) for m in missing), default=0)
    positions = np.full((rows, width), -1, dtype=np.int64)  # (b, K')
    positions[:, :depth] = retrieved
    for i, extra in enumerate(missing):
        positions[i, depth : depth + len(extra)] = extra
    relevant = np.array(
        [[p >= 0 and p in set(positives[i]) for p in positions[i]] for i in range(rows)],
        dtype=bool,
    ).reshape(rows, width)
    ranks = np.broadcast_to(np.arange(1, width + 1, dtype=np.int64), (rows, width)).copy()
    return Candidates(positions, relevant, ranks, positions >= 0)


def positive_rows(examples: Sequence[TrainExample], corpus: Corpus, source: Path) -> None:
    """Every positive must be a corpus document (ADORE scores positives from the frozen index)."""
    for example in examples:
        for doc_id in example.positive_ids:
            if doc_id not in corpus:
                raise DataError(
                    source, None, f"query {example.query_id!r}: positive {doc_id!r} not in corpus"
                )


def make_loss(
    schedule: BatchSchedule,
    query_model: SentenceTransformer,
    index: DenseIndex,
    vectors: npt.NDArray[np.float32],
    corpus: Corpus,
    config: TrainingConfig,
    ctx: DistContext,
) -> LossFn:
    args = config.model

    def compute(forward: torch.nn.Module, micro_step: int) -> torch.Tensor:
        local = schedule.batch(micro_step).shard(ctx.rank, ctx.world_size)
        features = tokenize(
            query_model, local.queries, args.max_query_length, ctx.device, args.query_prompt
        )
        queries = forward([features])[0]  # (b, dim)
        found = index.search(
            queries.detach().float().cpu().numpy(), local.query_ids, config.adore.top_k
        )
        positives = [[corpus.position(d) for d in rel] for rel in local.relevant]
        cands = dynamic_candidates(found.positions, positives)
        rows = np.where(cands.valid, cands.positions, 0)  # (b, K')
        docs = torch.from_numpy(np.asarray(vectors[rows.reshape(-1)], dtype=np.float32))
        docs = docs.view(*rows.shape, -1).to(queries.device)  # (b, K', dim)
        return adore_loss(
            queries,
            docs,
            torch.from_numpy(cands.relevant).to(queries.device),
            torch.from_numpy(cands.ranks).to(queries.device),
            torch.from_numpy(cands.valid).to(queries.device),
            config.adore.metric_cut,
            config.train.scale,
        )

    return compute


@skips_finished
def train_adore(
    config: TrainingConfig, workspace: Workspace, progress: Progress = no_progress
) -> dict[str, Any]:
    """Train a query encoder against a frozen document index; returns the run summary."""
    ctx = start(config)
    negatives = require_negatives(config)
    doc_model, corpus, vectors, index = frozen_document_side(config, workspace, ctx, progress)
    examples = load_examples(negatives)
    positive_rows(examples, corpus, negatives)
    schedule = BatchSchedule.for_run(examples, config, ctx.world_size, negatives_per_query=0)
    doc_name = document_model_name(config)
    query_model = load_trainable_encoder(config.model.model or doc_name, config, ctx.device)
    evaluator = training_evaluator(config, workspace, doc_model, query_model, corpus, progress)
    task = TrainingTask(
        name="adore",
        forward=BiEncoderForward(query_model),
        weights=query_model,
        micro_batches_per_epoch=schedule.batches_per_epoch,
        compute_loss=make_loss(schedule, query_model, index, vectors, corpus, config, ctx),
        evaluator=evaluator,
    )
    result = train_loop(task, config, ctx, progress)
    info: dict[str, Any] = {}
    if ctx.is_main:
        info = write_query_encoder_folder("adore", config, result, query_model, doc_model)
    finish(config, ctx)
    return info
