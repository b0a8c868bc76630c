"""Cross-encoder-mined negatives: RocketQA-style denoising of a BM25 + dense candidate pool.

For each query the pool is the union of its BM25 top-N and dense top-N (judged documents left
out); a cross-encoder rescores every (query, candidate) pair and the positives, and negatives are
chosen by that score. Candidates the cross-encoder scores like a positive are likely unlabeled
positives, so they are dropped: by default a candidate must score strictly below the query's
lowest-scored positive (``denoise_margin`` 0; Qu et al., "RocketQA: An Optimized Training
Approach to Dense Passage Retrieval for Open-Domain Question Answering", NAACL 2021, sec. 4.2).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from hardneg.core.backends import BackendChoice
from hardneg.core.beir import BeirSplit
from hardneg.core.embeddings import EmbeddingKey
from hardneg.core.encoders import DEFAULT_MODEL, model_fingerprint, pick_device, run_by
from hardneg.core.progress import Progress, no_progress
from hardneg.miners.bm25 import bm25_candidates, bm25_key
from hardneg.miners.candidates import (
    SOURCE_BM25,
    SOURCE_DENSE,
    CandidateLists,
    bucket_depth,
    cached_candidates,
    candidates_key,
    max_judged,
)
from hardneg.miners.dense import dense_candidates, dense_key, load_job_encoder
from hardneg.miners.filters import FilterConfig
from hardneg.miners.job import MinedRun, MiningJob
from hardneg.miners.selection import select_from_candidates

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder, SentenceTransformer

logger = logging.getLogger(__name__)

METHOD = "cross-encoder"


@dataclass(frozen=True)
class Pool:
    """One query's candidates to rescore: corpus rows and which retriever proposed each."""

    positions: tuple[int, ...]
    sources: tuple[int, ...]


def load_cross_encoder(
    name_or_path: str,
    device: str | None = None,
    max_length: int | None = None,
    backend: BackendChoice = "torch",
    exports: Path | None = None,
) -> CrossEncoder:
    """A sentence-transformers CrossEncoder by hub id or local path, run by ``backend`` (as the
    bi-encoder: an exported graph kept in ``exports``; see :mod:`hardneg.core.backends`)."""
    from sentence_transformers import CrossEncoder

    device = pick_device(device)
    model = CrossEncoder(name_or_path, device=device, max_length=max_length)
    return run_by(model, backend, device, exports)


def denoised(filters: FilterConfig, denoise_margin: float | None) -> FilterConfig:
    """``filters`` with an absolute margin of at least ``denoise_margin`` (None: unchanged)."""
    if denoise_margin is None:
        return filters
    current = filters.absolute_margin
    margin = denoise_margin if current is None else max(current, denoise_margin)
    return filters.model_copy(update={"absolute_margin": margin})


def union_pools(
    split: BeirSplit, bm25: CandidateLists, dense: CandidateLists, depth: int
) -> list[Pool]:
    """Per query: its top-``depth`` unjudged BM25 hits, then unseen top-``depth`` dense hits."""
    if bm25.query_ids != dense.query_ids:
        raise ValueError("BM25 and dense candidates are for different queries")
    pools: list[Pool] = []
    for row, query_id in enumerate(bm25.query_ids):
        judged = {split.corpus.position(d) for d in split.qrels.get(query_id, {})}
        flags: dict[int, int] = {}
        for lists, flag in ((bm25, SOURCE_BM25), (dense, SOURCE_DENSE)):
            unjudged = [p for p, _ in lists.hits(row) if p not in judged][:depth]
            for position in unjudged:
                flags[position] = flags.get(position, 0) | flag
        pools.append(Pool(tuple(flags), tuple(flags.values())))
    return pools


def predict(
    model: CrossEncoder,
    pairs: list[tuple[str, str]],
    batch_size: int,
    progress: Progress = no_progress,
) -> npt.NDArray[np.float32]:
    """Cross-encoder scores of (query, passage) pairs, one batch per predict call, so progress
    moves (and a cancel lands) every batch."""
    scores = np.zeros(len(pairs), np.float32)
    progress(0, len(pairs), "cross-encoder: scoring")
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        predicted = model.predict(
            chunk, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        scores[start : start + len(chunk)] = np.asarray(predicted, np.float32).reshape(-1)
        progress(start + len(chunk), len(pairs), "cross-encoder: scoring")
    return scores


def rescore(
    split: BeirSplit,
    model: CrossEncoder,
    pools: list[Pool],
    first_stage: CandidateLists,
    batch_size: int = 32,
    progress: Progress = no_progress,
) -> CandidateLists:
    """Score every pooled candidate and every positive; candidates sorted by that score."""
    corpus = split.corpus
    pairs: list[tuple[str, str]] = []
    for row, pool in enumerate(pools):
        query = split.queries[first_stage.query_ids[row]]
        rows = [corpus.position(d) for d in first_stage.positive_ids[row]] + list(pool.positions)
        pairs.extend((query, corpus.document(p).full_text) for p in rows)
    scores = predict(model, pairs, batch_size, progress)
    width = max((len(pool.positions) for pool in pools), default=0) or 1
    positions = np.full((len(pools), width), -1, np.int32)  # (n_queries, width)
    ranked = np.zeros((len(pools), width), np.float32)  # (n_queries, width)
    sources = np.zeros((len(pools), width), np.uint8)  # (n_queries, width)
    positive_scores: list[tuple[float, ...]] = []
    offset = 0
    for row, pool in enumerate(pools):
        n_pos = len(first_stage.positive_ids[row])
        positive_scores.append(tuple(float(s) for s in scores[offset : offset + n_pos]))
        mine = scores[offset + n_pos : offset + n_pos + len(pool.positions)]
        offset += n_pos + len(pool.positions)
        order = np.argsort(-mine, kind="stable")
        count = len(order)
        positions[row, :count] = np.asarray(pool.positions, np.int32)[order]
        ranked[row, :count] = mine[order]
        sources[row, :count] = np.asarray(pool.sources, np.uint8)[order]
    return CandidateLists(
        first_stage.query_ids,
        positions,
        ranked,
        first_stage.positive_ids,
        tuple(positive_scores),
        sources,
    )


def cross_encoder_candidates(
    job: MiningJob,
    model: CrossEncoder,
    encoder: SentenceTransformer,
    progress: Progress = no_progress,
) -> tuple[CandidateLists, bool]:
    """Cached cross-encoder-scored pools of the job's split (the pool's bi-encoder is
    ``encoder``); a hit runs neither retriever nor the cross-encoder."""
    split, workspace, cache = job.split, job.workspace, job.cache
    first_depth = bucket_depth(job.spec.pool_depth + max_judged(split))
    embedding = EmbeddingKey.for_model(split.corpus, encoder, job.spec.corpus_prompt)
    upstream = {
        "bm25": bm25_key(split, job.spec.bm25, first_depth),
        "dense": dense_key(split, embedding, job.spec.dense_search, first_depth),
    }
    key = candidates_key(
        METHOD,
        upstream
        | {
            "cross_encoder": model_fingerprint(model),
            "max_length": int(getattr(model, "max_seq_length", 0) or 0),
            "activation": type(model.activation_fn).__name__,
            "pool_depth": job.spec.pool_depth,
        },
    )

    def compute() -> CandidateLists:
        lexical, _ = bm25_candidates(split, workspace, first_depth, job.spec.bm25, cache, progress)
        search = job.spec.dense_search
        semantic, _ = dense_candidates(
            split, encoder, workspace, first_depth, search, cache, progress
        )
        pools = union_pools(split, lexical, semantic, job.spec.pool_depth)
        return rescore(split, model, pools, lexical, job.spec.batch_size, progress)

    return cached_candidates(cache, key, compute)


def negative_sources(run: MinedRun, split: BeirSplit, lists: CandidateLists) -> dict[str, int]:
    """How many chosen negatives came from BM25 only, dense only, or both."""
    names = {SOURCE_BM25: "bm25", SOURCE_DENSE: "dense", SOURCE_BM25 | SOURCE_DENSE: "both"}
    rows = {query_id: row for row, query_id in enumerate(lists.query_ids)}
    counts: Counter[str] = Counter()
    if lists.sources is None:
        return {}
    for mined in run.rows:
        row = rows[mined.query_id]
        flags = dict(zip(lists.positions[row].tolist(), lists.sources[row].tolist(), strict=True))
        for doc_id in mined.negative_ids:
            counts[names.get(flags.get(split.corpus.position(doc_id), 0), "unknown")] += 1
    return dict(counts)


def mine_cross_encoder(job: MiningJob, progress: Progress = no_progress) -> MinedRun:
    if not job.spec.cross_encoder:
        raise ValueError("the cross-encoder method needs a cross-encoder model id or path")
    encoder = load_job_encoder(job)
    model = load_cross_encoder(
        job.spec.cross_encoder,
        job.device,
        job.spec.cross_encoder_max_length,
        job.encoder_backend,
        job.workspace.encoder_exports,
    )
    lists, hit = cross_encoder_candidates(job, model, encoder, progress)
    filters = denoised(job.spec.filters, job.spec.denoise_margin)
    provenance: dict[str, object] = {
        "scorer": "cross-encoder",
        "cross_encoder": job.spec.cross_encoder,
        "cross_encoder_fingerprint": model_fingerprint(model),
        "model": job.spec.model or DEFAULT_MODEL,
        "pool_depth": job.spec.pool_depth,
        "denoise_margin": job.spec.denoise_margin,
        "effective_filters": filters.model_dump(),
        "bm25": job.spec.bm25.model_dump(),
        "cache_hit": hit,
    }
    run = select_from_candidates(job.split, lists, filters, METHOD, provenance, progress)
    sources = negative_sources(run, job.split, lists)
    return replace(run, provenance=dict(run.provenance) | {"negative_sources": sources})
