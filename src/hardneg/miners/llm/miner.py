"""The ``llm`` mining method: corpus-free negatives for a split's (query, positives) pairs.

The LLM and how it is called come from the spec's ``backend`` part, the generation settings
from its ``llm`` part (:class:`hardneg.miners.spec.LLMNegatives`: generations per query, the
first N queries only, the prompt file or built-in variant, sampling, the positive's length).

The job's bi-encoder spots near-duplicates of the positives; the job's cross-encoder, when given,
else the bi-encoder, is the scorer that decides whether a passage answers the query (with the
job's margins, or a 5% relative margin when none is set). The survivors then go through the
shared filters (:func:`hardneg.miners.selection.select_from_candidates`) like every other
method's candidates, so ``num_negatives``, ``sampling``, ``min_negatives`` and the score
filters apply.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, replace

import numpy as np

from hardneg.core.beir import BeirSplit, Corpus, Document
from hardneg.core.encoders import DEFAULT_MODEL
from hardneg.core.negatives import MinedQuery
from hardneg.core.progress import Progress, no_progress
from hardneg.miners.candidates import CandidateLists
from hardneg.miners.cross_encoder import load_cross_encoder
from hardneg.miners.dense import load_job_encoder
from hardneg.miners.job import FilterReport, MinedRun, MiningJob, merge_counts
from hardneg.miners.llm.backends import open_client
from hardneg.miners.llm.client import SamplingParams
from hardneg.miners.llm.negatives import (
    METHOD,
    NegativeGenConfig,
    NegativeGeneration,
    Scorer,
    bi_encoder_embedder,
    bi_encoder_scorer,
    cross_encoder_scorer,
    generate_negatives,
    split_positives,
)
from hardneg.miners.llm.prompts import negative_template
from hardneg.miners.selection import select_from_candidates

logger = logging.getLogger(__name__)


def negative_config(job: MiningJob) -> NegativeGenConfig:
    """The generator's settings: the spec's ``llm`` part, with the filters' count, seed, margins."""
    llm, filters = job.spec.llm, job.spec.filters
    margins_set = filters.absolute_margin is not None or filters.relative_margin is not None
    sampling = SamplingParams(
        max_tokens=llm.max_tokens,
        temperature=llm.temperature,
        seed=filters.seed if llm.seed is None else llm.seed,
    )
    return NegativeGenConfig(
        per_query=llm.per_query or filters.num_negatives,
        sampling=sampling,
        max_positive_chars=llm.max_positive_chars,
        max_positive_cosine=llm.max_positive_cosine,
        relative_margin=filters.relative_margin if margins_set else 0.05,
        absolute_margin=filters.absolute_margin,
        min_negatives=1,  # the shared filters apply the job's min_negatives afterwards
        skip_failures=llm.skip_failures,
    )


def _candidate_lists(
    job: MiningJob, rows: Sequence[MinedQuery]
) -> tuple[BeirSplit, CandidateLists]:
    """The generated negatives as candidate lists over a corpus of the rows' own texts (their
    positives and negatives), so that the shared filters read them like any miner's."""
    texts: dict[str, str] = {}
    for row in rows:
        texts.update(zip(row.positive_ids, row.positives, strict=True))
        texts.update(zip(row.negative_ids, row.negatives, strict=True))
    corpus = Corpus.from_documents([Document(doc_id, "", text) for doc_id, text in texts.items()])
    depth = max((len(row.negative_ids) for row in rows), default=0)
    positions = np.full((len(rows), depth), -1, dtype=np.int32)
    scores = np.zeros((len(rows), depth), dtype=np.float32)
    for i, row in enumerate(rows):
        count = len(row.negative_ids)
        positions[i, :count] = [corpus.position(doc_id) for doc_id in row.negative_ids]
        scores[i, :count] = [float(score or 0.0) for score in row.negative_scores]
    lists = CandidateLists(
        tuple(row.query_id for row in rows),
        positions,
        scores,
        tuple(row.positive_ids for row in rows),
        tuple(tuple(float(s or 0.0) for s in row.positive_scores) for row in rows),
    )
    queries = {row.query_id: row.query for row in rows}
    qrels = {query_id: dict(job.split.qrels.get(query_id, {})) for query_id in queries}
    return BeirSplit(job.split.name, corpus, queries, qrels), lists


def _chosen(row: MinedQuery, negative_ids: Sequence[str]) -> MinedQuery:
    """``row`` with the negatives the filters kept (texts and scores as generated)."""
    chosen = set(negative_ids)
    keep = [i for i, doc_id in enumerate(row.negative_ids) if doc_id in chosen]
    return replace(
        row,
        negative_ids=tuple(row.negative_ids[i] for i in keep),
        negatives=tuple(row.negatives[i] for i in keep),
        negative_scores=tuple(row.negative_scores[i] for i in keep),
    )


def _select(
    job: MiningJob, generation: NegativeGeneration, num_queries: int
) -> tuple[tuple[MinedQuery, ...], FilterReport]:
    """The shared filters (:func:`hardneg.miners.selection.select_from_candidates`) over the
    generated negatives; the report also counts what generation dropped and skipped."""
    filters = job.spec.filters
    selected = select_from_candidates(*_candidate_lists(job, generation.rows), filters, METHOD)
    by_query = {row.query_id: row for row in generation.rows}
    rows = tuple(_chosen(by_query[row.query_id], row.negative_ids) for row in selected.rows)
    report = selected.report
    skipped = {k: list(v) for k, v in report.skipped_ids.items()}
    if generation.skipped_queries:
        skipped.setdefault("too_few_negatives", []).extend(generation.skipped_queries)
    return rows, FilterReport(
        num_queries=num_queries,
        num_negatives=filters.num_negatives,
        full=report.full,
        short=report.short,
        skipped={reason: len(ids) for reason, ids in skipped.items()},
        removed=merge_counts([dict(generation.report.dropped), report.removed]),
        skipped_ids={reason: tuple(ids) for reason, ids in skipped.items()},
        short_ids=report.short_ids,
    )


def mine_llm(job: MiningJob, progress: Progress = no_progress) -> MinedRun:
    """Generate, filter and select LLM-written negatives for every query of ``job.split``."""
    backend, llm = job.spec.backend, job.spec.llm
    config = negative_config(job)
    template = negative_template(llm.prompt_file, llm.prompt_variant)
    max_queries = llm.max_queries
    query_ids = list(job.split.queries)[:max_queries] if max_queries else None
    items = split_positives(job.split, query_ids)
    encoder = load_job_encoder(job)
    scorer: Scorer = bi_encoder_scorer(encoder, job.spec.query_prompt)
    if job.spec.cross_encoder:
        cross = load_cross_encoder(
            job.spec.cross_encoder,
            job.device,
            job.spec.cross_encoder_max_length,
            job.encoder_backend,
            job.workspace.encoder_exports,
        )
        scorer = cross_encoder_scorer(cross, job.spec.batch_size)
    with open_client(backend, job.workspace.llm_exports) as client:
        generation = generate_negatives(
            client,
            items,
            bi_encoder_embedder(encoder),
            scorer,
            config,
            job.cache,
            template,
            progress,
        )
        fingerprint = client.fingerprint
    rows, report = _select(job, generation, len(items))
    provenance: dict[str, object] = {
        "llm": backend.describe() | {"fingerprint": fingerprint},
        "prompt": {"name": template.name, "version": template.version},
        "generation": asdict(config),
        "generation_stats": generation.stats.to_json(),
        "generation_report": generation.report.to_json(),
        "scorer": "cross-encoder" if job.spec.cross_encoder else "bi-encoder",
        "cross_encoder": job.spec.cross_encoder,
        "model": job.spec.model or DEFAULT_MODEL,
    }
    return MinedRun(METHOD, rows, report, provenance)
