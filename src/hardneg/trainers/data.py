"""Training examples from a mined-negatives file, served as seeded, resumable batches.

The batch at (epoch, index) is a pure function of the seed, so a resumed run sees exactly the
batches an uninterrupted one would, and every rank of a distributed run can build the whole
global batch (ids for masking) while encoding only its own slice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from hardneg.core.beir import DataError
from hardneg.core.negatives import MinedQuery, read_mined
from hardneg.trainers.config import TrainingConfig

logger = logging.getLogger(__name__)

PAD_ID = ""  # id and text of a padding negative slot (masked out of every loss)


TrainExample = MinedQuery  # a mined row with a positive, its negatives cut to the trainer's depth


def load_examples(path: Path, negative_depth: int = 0) -> list[TrainExample]:
    """Rows of a mined file that have a positive; negatives cut to the first ``negative_depth``."""
    examples: list[TrainExample] = []
    skipped = 0
    for row in read_mined(path):
        if not row.positive_ids:
            skipped += 1
            continue
        depth = negative_depth or len(row.negative_ids)
        examples.append(
            replace(
                row,
                negative_ids=row.negative_ids[:depth],
                negatives=row.negatives[:depth],
                negative_scores=row.negative_scores[:depth],
            )
        )
    if skipped:
        logger.warning("%s: %d queries without a positive were skipped", path, skipped)
    if not examples:
        raise DataError(path, None, "no query with a positive to train on")
    return examples


@dataclass(frozen=True)
class Batch:
    """B queries, one positive each, k hard-negative slots each (padding where fewer).

    Document layout used by every loss: ``positives`` (B) then ``negatives`` (B * k), query
    ``i``'s negatives at ``i * k .. i * k + k - 1``.
    """

    query_ids: tuple[str, ...]  # (B,)
    queries: tuple[str, ...]  # (B,)
    positive_ids: tuple[str, ...]  # (B,)
    positives: tuple[str, ...]  # (B,)
    negative_ids: tuple[str, ...]  # (B * k,)
    negatives: tuple[str, ...]  # (B * k,)
    relevant: tuple[frozenset[str], ...]  # (B,) every positive id of each query
    negatives_per_query: int

    def __len__(self) -> int:
        return len(self.query_ids)

    @property
    def doc_ids(self) -> tuple[str, ...]:
        return self.positive_ids + self.negative_ids  # (B + B * k,)

    def shard(self, rank: int, world_size: int) -> Batch:
        """The contiguous slice of queries (and their documents) that ``rank`` encodes."""
        if len(self) % world_size:
            raise ValueError(f"batch of {len(self)} does not split over {world_size} ranks")
        size = len(self) // world_size
        lo, hi = rank * size, (rank + 1) * size
        k = self.negatives_per_query
        return Batch(
            self.query_ids[lo:hi],
            self.queries[lo:hi],
            self.positive_ids[lo:hi],
            self.positives[lo:hi],
            self.negative_ids[lo * k : hi * k],
            self.negatives[lo * k : hi * k],
            self.relevant[lo:hi],
            k,
        )


def negative_mask(batch: Batch, rows: slice | None = None) -> torch.Tensor:
    """(B', M) bool: document j is a usable negative for query i (not relevant, not padding).

    Rows are the batch's queries (or ``rows`` of them); columns follow :attr:`Batch.doc_ids`.
    A query's own positive is relevant, so it is never a negative; nor is another query's
    positive or hard negative that the qrels mark relevant to this query (a false negative).
    """
    doc_ids = batch.doc_ids
    selected = batch.relevant[rows] if rows is not None else batch.relevant
    mask = [[doc != PAD_ID and doc not in relevant for doc in doc_ids] for relevant in selected]
    return torch.tensor(mask, dtype=torch.bool).reshape(len(selected), len(doc_ids))


class BatchSchedule:
    """Seeded global batches: epoch ``e`` is a permutation of the examples drawn from (seed, e).

    The last incomplete batch of an epoch is dropped so every step has the full global batch.
    """

    def __init__(
        self,
        examples: Sequence[TrainExample],
        global_batch_size: int,
        negatives_per_query: int,
        seed: int,
    ) -> None:
        if global_batch_size > len(examples):
            raise ValueError(
                f"batch size {global_batch_size} exceeds the {len(examples)} training queries"
            )
        self.examples = tuple(examples)
        self.global_batch_size = global_batch_size
        self.negatives_per_query = negatives_per_query
        self.seed = seed
        self.batches_per_epoch = len(examples) // global_batch_size

    @classmethod
    def for_run(
        cls,
        examples: Sequence[TrainExample],
        config: TrainingConfig,
        world_size: int,
        negatives_per_query: int | None = None,
    ) -> BatchSchedule:
        """A run's schedule: ``config``'s per-device batch on each of ``world_size`` ranks, its
        seed, and its ``negatives_per_query`` unless given (ADORE retrieves its own: 0)."""
        negatives = (
            config.data.negatives_per_query if negatives_per_query is None else negatives_per_query
        )
        global_batch = config.train.per_device_batch_size * world_size
        return cls(examples, global_batch, negatives, config.train.seed)

    def _order(self, epoch: int) -> npt.NDArray[np.int64]:
        return _permutation(len(self.examples), self.seed, epoch)

    def batch(self, micro_step: int) -> Batch:
        """The ``micro_step``-th batch of the run (epochs follow one another)."""
        epoch, index = divmod(micro_step, self.batches_per_epoch)
        size = self.global_batch_size
        chosen = self._order(epoch)[index * size : (index + 1) * size]
        return self._assemble([int(i) for i in chosen], epoch)

    def _assemble(self, chosen: list[int], epoch: int) -> Batch:
        k = self.negatives_per_query
        query_ids: list[str] = []
        queries: list[str] = []
        pos_ids: list[str] = []
        pos_texts: list[str] = []
        neg_ids: list[str] = []
        neg_texts: list[str] = []
        relevant: list[frozenset[str]] = []
        for example_index in chosen:
            example = self.examples[example_index]
            rng = np.random.default_rng([self.seed, epoch, example_index])
            p = int(rng.integers(len(example.positive_ids)))
            picked = _sample(rng, len(example.negative_ids), k)
            query_ids.append(example.query_id)
            queries.append(example.query)
            pos_ids.append(example.positive_ids[p])
            pos_texts.append(example.positives[p])
            neg_ids.extend(example.negative_ids[j] for j in picked)
            neg_texts.extend(example.negatives[j] for j in picked)
            neg_ids.extend([PAD_ID] * (k - len(picked)))
            neg_texts.extend([""] * (k - len(picked)))
            relevant.append(frozenset(example.positive_ids))
        return Batch(
            tuple(query_ids),
            tuple(queries),
            tuple(pos_ids),
            tuple(pos_texts),
            tuple(neg_ids),
            tuple(neg_texts),
            tuple(relevant),
            k,
        )


def _sample(rng: np.random.Generator, available: int, k: int) -> list[int]:
    """Up to ``k`` distinct indices below ``available``, in random order."""
    if k == 0 or available == 0:
        return []
    return [int(i) for i in rng.choice(available, size=min(k, available), replace=False)]


@lru_cache(maxsize=4)
def _permutation(n: int, seed: int, epoch: int) -> npt.NDArray[np.int64]:
    order = np.random.default_rng([seed, epoch]).permutation(n)
    order.setflags(write=False)
    return order
