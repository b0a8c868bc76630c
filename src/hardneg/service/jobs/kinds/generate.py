"""The ``generate`` job kind: LLM-written queries for a corpus, as a new corpus.

Runs ``pipelines.generate`` (queries per sampled passage, round-trip filtered) and registers its
BEIR folder (the same corpus, the generated ``queries.jsonl`` and ``qrels/train.tsv``) as a new
corpus, so mining and training jobs take it as is. The LLM is the server's
(``HARDNEG_LLM_BACKEND``, ``HARDNEG_LLM_BASE_URL``, ``HARDNEG_LLM_MODEL``): a request cannot point
the workers at another endpoint. Generated texts are cached in Redis (``llm`` namespace).
"""

from __future__ import annotations

from dataclasses import replace

from hardneg.core.atomic import write_bytes_atomic
from hardneg.service.jobs.context import JobContext, JobOutcome, require_corpus, resolve_model_refs
from hardneg.service.jobs.corpora import CorpusRecord, corpora_root, ready_fields
from hardneg.service.specs import GenerateSpec

MODEL_FIELDS = ("encoder",)


def generated_corpus_id(job_id: str) -> str:
    """One corpus per generate job, the same for every attempt (a retry replaces it)."""
    return "c" + job_id.removeprefix("j")


def run(spec: GenerateSpec, context: JobContext) -> JobOutcome:
    from hardneg.service.pipelines.generate import run_generate_queries

    source = require_corpus(context)
    settings = context.settings
    spec = resolve_model_refs(spec, MODEL_FIELDS, settings)
    spec = spec.model_copy(update={"llm": settings.llm_config()})
    corpus_id = generated_corpus_id(context.job_id)
    folder = corpora_root(settings.home) / corpus_id
    result = run_generate_queries(spec, str(source.path), context.pipeline(folder))
    fields = ready_fields(
        source.fingerprint or "",
        source.documents,
        result.queries,
        {"train": result.queries},
        folder,
    )
    record = CorpusRecord(
        id=corpus_id,
        name=spec.name or f"{source.name} + generated queries",
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
