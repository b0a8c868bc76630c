"""The ``generate-queries`` job: LLM queries for a corpus's passages, round-trip filtered, written
as a BEIR folder (corpus, queries.jsonl, qrels/train.tsv, generation.json) that ``mine`` and the
trainers take as is."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from hardneg.core.beir import Corpus, find_corpus_file, load_corpus
from hardneg.core.encoders import load_encoder
from hardneg.core.progress import Progress
from hardneg.core.workspace import Workspace
from hardneg.miners.llm.backends import open_client
from hardneg.miners.llm.client import SamplingParams
from hardneg.miners.llm.prompts import query_template
from hardneg.miners.llm.queries import (
    QueryGenConfig,
    TextRetriever,
    bm25_retriever,
    corpus_dense_retriever,
    generate_queries,
    write_generated_queries,
)
from hardneg.service.pipelines.context import PipelineContext
from hardneg.service.pipelines.data import find_dataset, refuse_foreign_output
from hardneg.service.settings import Settings
from hardneg.service.specs import GenerateSpec

logger = logging.getLogger(__name__)

SUMMARY_FILE = "generation.json"


@dataclass(frozen=True)
class GenerateQueriesResult:
    output: Path
    passages: int
    queries: int
    report: dict[str, object]
    generation: dict[str, object]
    seconds: dict[str, float]


def sample_positions(corpus_size: int, max_passages: int | None, seed: int) -> list[int]:
    """All rows, or a seeded sample of ``max_passages`` of them (in corpus order)."""
    if max_passages is not None and max_passages <= 0:
        raise ValueError(f"max_passages must be positive, got {max_passages}")
    if max_passages is None or max_passages >= corpus_size:
        return list(range(corpus_size))
    return sorted(random.Random(seed).sample(range(corpus_size), max_passages))


def make_retriever(
    spec: GenerateSpec,
    corpus: Corpus,
    workspace: Workspace,
    settings: Settings,
    progress: Progress,
) -> TextRetriever:
    if spec.round_trip == "bm25":
        return bm25_retriever(workspace.bm25_index(corpus, progress=progress))
    name, exports = spec.encoder or settings.model, workspace.encoder_exports
    model = load_encoder(name, settings.device, None, settings.encoder_backend, exports)
    return corpus_dense_retriever(model, corpus, workspace, progress)


def query_config(spec: GenerateSpec) -> QueryGenConfig:
    sampling = SamplingParams(
        max_tokens=spec.max_tokens, temperature=spec.temperature, seed=spec.seed
    )
    return QueryGenConfig(
        per_passage=spec.per_passage,
        round_trip_k=spec.round_trip_k,
        sampling=sampling,
        max_passage_chars=spec.max_passage_chars,
        skip_failures=spec.skip_failures,
    )


def run_generate_queries(
    spec: GenerateSpec, data: str, context: PipelineContext
) -> GenerateQueriesResult:
    """Generate and filter queries for ``data`` (a BEIR folder or dataset name), then write
    ``context.output`` whole (or not at all)."""
    settings, output, progress = context.settings, context.output, context.progress
    refuse_foreign_output(output, SUMMARY_FILE)
    template = query_template(spec.prompt_file)  # fail on a bad prompt before any work
    config = query_config(spec)
    workspace = Workspace(settings.home)
    cache = context.cache_or_disk() if spec.cache else None
    started = time.perf_counter()
    folder = find_dataset(data, settings, progress)
    corpus = load_corpus(find_corpus_file(folder))
    positions = sample_positions(len(corpus), spec.max_passages or None, spec.seed)
    retriever = make_retriever(spec, corpus, workspace, settings, progress)
    prepared = time.perf_counter()
    with open_client(spec.llm, workspace.llm_exports) as client:
        result = generate_queries(
            client, corpus, positions, retriever, config, cache, template, progress
        )
        fingerprint = client.fingerprint
    generated = time.perf_counter()
    meta = {
        "data": data,
        "corpus_fingerprint": corpus.fingerprint,
        "llm": spec.llm.describe() | {"fingerprint": fingerprint},
        "prompt": {"name": template.name, "version": template.version},
        "config": asdict(config),
        "round_trip": spec.round_trip,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_generated_queries(output, result, folder, meta)
    seconds = {
        "prepare": prepared - started,
        "generate": generated - prepared,
        "write": time.perf_counter() - generated,
    }
    logger.info("%d queries from %d passages into %s", len(result.queries), len(positions), output)
    return GenerateQueriesResult(
        output,
        len(positions),
        len(result.queries),
        result.report.to_json(),
        result.stats.to_json(),
        seconds,
    )
