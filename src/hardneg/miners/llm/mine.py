"""The ``llm`` mining method: corpus-free negatives for a split's (query, positives) pairs.

LLM settings come from the job's free-form options (all optional)::

    llm_backend      llama_cpp | openai          llm_model        .gguf path | model name
    llm_base_url     openai endpoint             llm_api_key_env  variable holding the key
    llm_concurrency, llm_timeout_s, llm_max_retries, llm_n_ctx, llm_n_threads
    llm_per_query    generations per query (default: num_negatives)
    llm_max_queries  only the first N queries of the split
    llm_prompt_file  TOML template (see hardneg.miners.llm.prompts)
    llm_prompt_variant  built-in prompt: query+positive (default) or query-only
    llm_temperature, llm_max_tokens, llm_seed, llm_skip_failures, llm_max_positive_cosine
    llm_max_positive_chars  the positive shown in the prompt is cut to this (default 1200)

The job's bi-encoder spots near-duplicates of the positives; the job's cross-encoder, when given,
else the bi-encoder, is the scorer that decides whether a passage answers the query (with the
job's margins, or a 5% relative margin when none is set). The survivors then go through the
shared filters (:func:`hardneg.miners.filters.select_negatives`) like every other method's
candidates, so ``num_negatives``, ``sampling``, ``min_negatives`` and the score filters apply.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

from hardneg.core.encoders import DEFAULT_MODEL
from hardneg.core.negatives import MinedQuery
from hardneg.core.progress import Progress, no_progress
from hardneg.miners.cross_encoder import load_cross_encoder
from hardneg.miners.dense import load_job_encoder
from hardneg.miners.filters import Candidate, FilterConfig, QueryPool, select_negatives
from hardneg.miners.job import FilterReport, MinedRun, MiningJob, merge_counts
from hardneg.miners.llm.backends import backend_from_options, open_client
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

logger = logging.getLogger(__name__)

T = TypeVar("T", int, float, str, bool)


def optional(options: Mapping[str, object], name: str, kind: type[T]) -> T | None:
    """``options[name]`` checked against ``kind`` (ints pass as floats); None when absent."""
    value = options.get(name)
    if value is None:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # type: ignore[return-value]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ValueError(f"option {name} must be {kind.__name__}, got {value!r}")
    return value


def option(options: Mapping[str, object], name: str, default: T) -> T:
    value = optional(options, name, type(default))
    return default if value is None else value


def negative_config(job: MiningJob) -> NegativeGenConfig:
    options, filters = job.options, job.filters
    margins_set = filters.absolute_margin is not None or filters.relative_margin is not None
    sampling = SamplingParams(
        max_tokens=option(options, "llm_max_tokens", 160),
        temperature=option(options, "llm_temperature", 0.8),
        seed=option(options, "llm_seed", filters.seed),
    )
    return NegativeGenConfig(
        per_query=option(options, "llm_per_query", filters.num_negatives),
        sampling=sampling,
        max_positive_chars=option(options, "llm_max_positive_chars", 1200),
        max_positive_cosine=option(options, "llm_max_positive_cosine", 0.9),
        relative_margin=filters.relative_margin if margins_set else 0.05,
        absolute_margin=filters.absolute_margin,
        min_negatives=1,  # the shared filters apply the job's min_negatives afterwards
        skip_failures=option(options, "llm_skip_failures", False),
    )


def _select(
    job: MiningJob, generation: NegativeGeneration, filters: FilterConfig
) -> tuple[list[MinedQuery], list[Mapping[str, int]], list[str], list[str]]:
    rows, removed, skipped, short = [], [], [], []
    for row in generation.rows:
        pool = QueryPool.from_texts(
            row.query_id,
            row.query,
            {
                doc_id: (float(score or 0.0), text)
                for doc_id, score, text in zip(
                    row.positive_ids, row.positive_scores, row.positives, strict=True
                )
            },
            [
                Candidate.from_text(doc_id, float(score or 0.0), text)
                for doc_id, score, text in zip(
                    row.negative_ids, row.negative_scores, row.negatives, strict=True
                )
            ],
            frozenset(job.split.qrels.get(row.query_id, {})),
        )
        selection = select_negatives(pool, filters, max(len(row.positive_ids), 1))
        removed.append(selection.removed)
        chosen = {c.doc_id for c in selection.negatives}
        if len(chosen) < filters.min_negatives:
            skipped.append(row.query_id)
            continue
        if len(chosen) < filters.num_negatives:
            short.append(row.query_id)
        keep = [i for i, doc_id in enumerate(row.negative_ids) if doc_id in chosen]
        rows.append(
            MinedQuery(
                query_id=row.query_id,
                query=row.query,
                positive_ids=row.positive_ids,
                positives=row.positives,
                positive_scores=row.positive_scores,
                negative_ids=tuple(row.negative_ids[i] for i in keep),
                negatives=tuple(row.negatives[i] for i in keep),
                negative_scores=tuple(row.negative_scores[i] for i in keep),
                method=METHOD,
            )
        )
    return rows, removed, skipped, short


def mine_llm(job: MiningJob, progress: Progress = no_progress) -> MinedRun:
    """Generate, filter and select LLM-written negatives for every query of ``job.split``."""
    backend = backend_from_options(job.options)
    config = negative_config(job)
    prompt_file = optional(job.options, "llm_prompt_file", str)
    variant = option(job.options, "llm_prompt_variant", "query+positive")
    template = negative_template(
        Path(prompt_file) if prompt_file else None,
        variant,  # type: ignore[arg-type]  # checked by negative_template
    )
    max_queries = optional(job.options, "llm_max_queries", int)
    query_ids = list(job.split.queries)[:max_queries] if max_queries else None
    items = split_positives(job.split, query_ids)
    encoder = load_job_encoder(job)
    scorer: Scorer = bi_encoder_scorer(encoder, job.query_prompt)
    if job.cross_encoder:
        cross = load_cross_encoder(job.cross_encoder, job.device, job.cross_encoder_max_length)
        scorer = cross_encoder_scorer(cross, job.batch_size)
    with open_client(backend) as client:
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
    rows, removed, too_few, short = _select(job, generation, job.filters)
    skipped = {"too_few_negatives": [*generation.skipped_queries, *too_few]}
    skipped = {reason: ids for reason, ids in skipped.items() if ids}
    report = FilterReport(
        num_queries=len(items),
        num_negatives=job.filters.num_negatives,
        full=len(rows) - len(short),
        short=len(short),
        skipped={reason: len(ids) for reason, ids in skipped.items()},
        removed=merge_counts([dict(generation.report.dropped), *removed]),
        skipped_ids={reason: tuple(ids) for reason, ids in skipped.items()},
        short_ids=tuple(short),
    )
    provenance: dict[str, object] = {
        "llm": backend.describe() | {"fingerprint": fingerprint},
        "prompt": {"name": template.name, "version": template.version},
        "generation": asdict(config),
        "generation_stats": generation.stats.to_json(),
        "generation_report": generation.report.to_json(),
        "scorer": "cross-encoder" if job.cross_encoder else "bi-encoder",
        "cross_encoder": job.cross_encoder,
        "model": job.model or DEFAULT_MODEL,
    }
    return MinedRun(METHOD, tuple(rows), report, provenance)
