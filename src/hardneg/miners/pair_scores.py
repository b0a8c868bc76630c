"""Teacher scores for a mined-negatives file: every (query, positive) and (query, negative) pair
scored again by one scorer, written into the file's ``positive_scores`` / ``negative_scores``.

This is the miner-side half of GPL-style training (Wang et al., NAACL 2022): the trainer
(:mod:`hardneg.trainers.margin_mse`) regresses the student's score margins onto these. The
n-tuple layout written beside the file carries the same numbers in sentence-transformers'
``output_scores`` convention (``scores = [positive, negative_1, ..., negative_n]``), so any
MarginMSE implementation can read them.

Scorers:

- ``cross-encoder``: a sentence-transformers ``CrossEncoder`` (any id or path), the GPL teacher;
- ``hybrid``: an offline teacher when no cross-encoder is at hand: the base bi-encoder's cosine
  plus BM25 brought to the same spread, ``scale * (cos + weight * bm25 * sd(cos) / sd(bm25))``,
  the standard deviations taken over every pair scored. With ``weight = 0`` it equals the
  zero-shot student's own scores (nothing to learn); the BM25 part is the lexical evidence the
  student is taught to add.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from hardneg.core.beir import Corpus
from hardneg.core.bm25 import BM25Index
from hardneg.core.encoders import encode_texts, model_fingerprint
from hardneg.core.negatives import MinedQuery, read_meta, read_mined
from hardneg.core.progress import Progress, no_progress
from hardneg.miners.cross_encoder import predict
from hardneg.miners.output import Exports, Layout, write_outputs

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder, SentenceTransformer

logger = logging.getLogger(__name__)

Scores = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Pairs:
    """Flat (query, document) pairs; ``doc_ids`` name corpus rows (or generated texts)."""

    queries: tuple[str, ...]
    doc_ids: tuple[str, ...]
    doc_texts: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.queries)


class PairScorer(Protocol):
    def describe(self) -> dict[str, object]: ...

    def __call__(self, pairs: Pairs, progress: Progress) -> Scores: ...


class CrossEncoderScorer:
    def __init__(self, model: CrossEncoder, name: str, batch_size: int = 32) -> None:
        self.model, self.name, self.batch_size = model, name, batch_size

    def describe(self) -> dict[str, object]:
        return {
            "scorer": "cross-encoder",
            "cross_encoder": self.name,
            "fingerprint": model_fingerprint(self.model),
        }

    def __call__(self, pairs: Pairs, progress: Progress) -> Scores:
        items = list(zip(pairs.queries, pairs.doc_texts, strict=True))
        return predict(self.model, items, self.batch_size, progress)


class HybridScorer:
    """Bi-encoder cosine plus spread-matched BM25 (see the module docstring)."""

    def __init__(
        self,
        encoder: SentenceTransformer,
        index: BM25Index,
        corpus: Corpus,
        weight: float = 1.0,
        scale: float = 20.0,
    ) -> None:
        self.encoder, self.index, self.corpus = encoder, index, corpus
        self.weight, self.scale = weight, scale

    def describe(self) -> dict[str, object]:
        return {
            "scorer": "hybrid",
            "bi_encoder": model_fingerprint(self.encoder),
            "bm25": {"k1": self.index.params.k1, "b": self.index.params.b},
            "weight": self.weight,
            "scale": self.scale,
        }

    def bm25(self, pairs: Pairs) -> Scores:
        scores = np.zeros(len(pairs), np.float32)
        by_query: dict[str, list[int]] = {}
        for i, query in enumerate(pairs.queries):
            by_query.setdefault(query, []).append(i)
        for query, rows in by_query.items():
            inside = [i for i in rows if pairs.doc_ids[i] in self.corpus]
            if not inside:
                continue  # generated texts are not in the index: BM25 0
            positions = [self.corpus.position(pairs.doc_ids[i]) for i in inside]
            tokens = self.index.tokenize([query])[0]
            scores[inside] = self.index.score_documents(tokens, positions)
        return scores

    def cosine(self, pairs: Pairs, progress: Progress) -> Scores:
        unique_queries = sorted(set(pairs.queries))
        unique_docs = sorted(set(zip(pairs.doc_ids, pairs.doc_texts, strict=True)))
        q = encode_texts(self.encoder, unique_queries, progress=progress, stage="teacher: queries")
        d = encode_texts(
            self.encoder, [t for _, t in unique_docs], progress=progress, stage="teacher: docs"
        )
        q_row = {text: i for i, text in enumerate(unique_queries)}
        d_row = {doc_id: i for i, (doc_id, _) in enumerate(unique_docs)}
        left = q[[q_row[t] for t in pairs.queries]]  # (n, dim)
        right = d[[d_row[i] for i in pairs.doc_ids]]  # (n, dim)
        left = left / np.linalg.norm(left, axis=1, keepdims=True).clip(min=1e-12)
        right = right / np.linalg.norm(right, axis=1, keepdims=True).clip(min=1e-12)
        return (left * right).sum(axis=1).astype(np.float32)  # (n,)

    def __call__(self, pairs: Pairs, progress: Progress) -> Scores:
        cosine, lexical = self.cosine(pairs, progress), self.bm25(pairs)
        spread = float(lexical.std())
        ratio = float(cosine.std()) / spread if spread > 0 else 0.0
        return (self.scale * (cosine + self.weight * ratio * lexical)).astype(np.float32)


def pairs_of(rows: Sequence[MinedQuery]) -> Pairs:
    queries: list[str] = []
    ids: list[str] = []
    texts: list[str] = []
    for row in rows:
        for doc_id, text in (
            *zip(row.positive_ids, row.positives, strict=True),
            *zip(row.negative_ids, row.negatives, strict=True),
        ):
            queries.append(row.query)
            ids.append(doc_id)
            texts.append(text)
    return Pairs(tuple(queries), tuple(ids), tuple(texts))


def score_rows(
    rows: Sequence[MinedQuery], scorer: PairScorer, progress: Progress = no_progress
) -> list[MinedQuery]:
    """The rows with every positive and negative scored by ``scorer`` (method kept)."""
    pairs = pairs_of(rows)
    scores = scorer(pairs, progress) if len(pairs) else np.zeros(0, np.float32)
    if len(scores) != len(pairs):
        raise RuntimeError(f"scorer returned {len(scores)} scores for {len(pairs)} pairs")
    scored: list[MinedQuery] = []
    offset = 0
    for row in rows:
        n_pos, n_neg = len(row.positive_ids), len(row.negative_ids)
        values = [float(s) for s in scores[offset : offset + n_pos + n_neg]]
        offset += n_pos + n_neg
        scored.append(
            replace(
                row, positive_scores=tuple(values[:n_pos]), negative_scores=tuple(values[n_pos:])
            )
        )
    logger.info("scored %d pairs of %d queries", len(pairs), len(rows))
    return scored


def score_mined_file(
    source: Path,
    scorer: PairScorer,
    folder: Path,
    progress: Progress = no_progress,
) -> Exports:
    """Score a mined file into ``folder``: ``mined.jsonl`` (scores replaced, provenance in its
    meta under ``teacher``) and the n-tuple layout with its ``scores`` column."""
    rows = list(read_mined(source))
    scored = score_rows(rows, scorer, progress)
    width = max((len(r.negative_ids) for r in scored), default=0)
    meta = read_meta(source) | {"teacher": scorer.describe(), "scored_from": str(source)}
    layouts: tuple[Layout, ...] = ("n-tuple",) if width else ()
    return write_outputs(folder, scored, meta, max(width, 1), layouts, ("jsonl",), progress)
