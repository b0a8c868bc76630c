"""The ``generate`` job kind: LLM-written queries for a corpus, as a new corpus.

Runs ``pipelines.generate`` (queries per sampled passage, round-trip filtered) and registers its
BEIR folder (the same corpus, the generated ``queries.jsonl`` and ``qrels/train.tsv``) as a new
corpus, so mining and training jobs take it as is. The LLM is the server's
(``HARDNEG_LLM_BACKEND``, ``HARDNEG_LLM_BASE_URL``, ``HARDNEG_LLM_MODEL``): a request cannot point
the workers at another endpoint. Generated texts are cached in Redis (``llm`` namespace).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hardneg.core.atomic import write_bytes_atomic
from hardneg.service.jobs.context import (
    JobContext,
    JobOutcome,
    check_model_refs,
    require_corpus,
)
from hardneg.service.jobs.corpora import NAME_PATTERN, CorpusRecord, corpora_root, ready_fields
from hardneg.service.jobs.paths import resolve_model_ref
from hardneg.service.settings import Settings


class GenerateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, pattern=NAME_PATTERN, description="name of the new corpus")
    per_passage: int = Field(3, ge=1, le=20, description="queries asked for per passage")
    max_passages: int | None = Field(100, ge=1, description="passages sampled (null: all)")
    seed: int = Field(0, ge=0)
    round_trip: Literal["bm25", "dense"] = Field(
        "bm25", description="a query is kept when this retriever finds its passage"
    )
    round_trip_k: int = Field(10, ge=1, le=1000)
    encoder: str | None = Field(None, description="bi-encoder of the dense round trip")
    temperature: float = Field(0.8, ge=0, le=2)
    max_tokens: int = Field(48, ge=1, le=1024)
    max_passage_chars: int = Field(1500, ge=100, le=20000)
    skip_failures: bool = Field(False, description="skip passages whose LLM call fails")

    def server_check(self, settings: Settings) -> None:
        check_model_refs(self, ("encoder",), settings)


def generated_corpus_id(job_id: str) -> str:
    """One corpus per generate job, the same for every attempt (a retry replaces it)."""
    return "c" + job_id.removeprefix("j")


def run(params: GenerateParams, context: JobContext) -> JobOutcome:
    from hardneg.miners.llm.backends import BackendConfig
    from hardneg.service.pipelines.generate import GenerateQueriesRequest, run_generate_queries

    source = require_corpus(context)
    settings = context.settings
    llm = BackendConfig(
        backend=settings.llm_backend,
        model=settings.llm_model,
        base_url=settings.llm_base_url,
        api_key_env=settings.llm_api_key_env,
        timeout_s=settings.llm_timeout_seconds,
        max_retries=settings.llm_max_retries,
        concurrency=settings.llm_concurrency,
    )
    request = GenerateQueriesRequest(
        data=str(source.path),
        llm=llm,
        per_passage=params.per_passage,
        max_passages=params.max_passages,
        seed=params.seed,
        round_trip=params.round_trip,
        round_trip_k=params.round_trip_k,
        encoder=resolve_model_ref(params.encoder, settings) if params.encoder else None,
        temperature=params.temperature,
        max_tokens=params.max_tokens,
        max_passage_chars=params.max_passage_chars,
        skip_failures=params.skip_failures,
    )
    corpus_id = generated_corpus_id(context.job_id)
    folder = corpora_root(settings.home) / corpus_id
    result = run_generate_queries(request, settings, folder, context.progress, context.cache)
    fields = ready_fields(
        source.fingerprint or "",
        source.documents,
        result.queries,
        {"train": result.queries},
        folder,
    )
    record = CorpusRecord(
        id=corpus_id,
        name=params.name or f"{source.name} + generated queries",
        source="generated",
        folder=str(folder),
        source_ref=source.id,
        job_id=context.job_id,
    )
    context.corpora.create(replace(record, **fields))  # type: ignore[arg-type]
    for name in ("queries.jsonl", "generation.json"):  # downloadable from the job as well
        write_bytes_atomic(context.output_dir / name, (folder / name).read_bytes())
    return JobOutcome(
        stats={
            "corpus_id": corpus_id,
            "passages": result.passages,
            "queries": result.queries,
            "report": result.report,
            "seconds": result.seconds,
        },
        artifacts={n: context.output_dir / n for n in ("queries.jsonl", "generation.json")},
        results="queries.jsonl",
    )
