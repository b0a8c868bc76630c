"""Queries generated from passages (doc2query), kept only when they retrieve their passage.

For each passage the LLM samples ``per_passage`` queries (one call each, seeds ``seed..seed+n-1``).
Outputs are cleaned (:mod:`hardneg.miners.llm.parsing`), de-duplicated, and put through the
round-trip consistency filter: a query survives only if a retriever ranks its source passage in
the top ``k`` for it (Alberti et al., "Synthetic QA Corpora Generation with Roundtrip
Consistency", ACL 2019; the retrieval form used by Promptagator, Dai et al., ICLR 2023).
Identical queries from different passages become one query with several relevant passages.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from hardneg.core.atomic import atomic_path
from hardneg.core.beir import Corpus, find_corpus_file
from hardneg.core.bm25 import BM25Index
from hardneg.core.cache import Cache
from hardneg.core.dense import DenseIndex, DenseIndexConfig
from hardneg.core.embeddings import EmbeddingKey
from hardneg.core.encoders import encode_texts
from hardneg.core.progress import Progress, no_progress
from hardneg.core.results import SearchResults
from hardneg.core.workspace import Workspace
from hardneg.miners.llm.client import LLMClient, LLMError, SamplingParams
from hardneg.miners.llm.generation import GenerationJob, GenerationStats, generate_all
from hardneg.miners.llm.parsing import (
    ROUND_TRIP,
    DropReport,
    Parsed,
    QueryLimits,
    clean_query,
    generated_id,
    split_questions,
    usable_outputs,
    whole,
)
from hardneg.miners.llm.prompts import DOC2QUERY, PromptTemplate

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)


class TextRetriever(Protocol):
    """Top-``k`` corpus hits for each query text."""

    def __call__(self, queries: Sequence[str], k: int) -> SearchResults: ...


ROUND_TRIP_BATCH = 64  # generated queries per retriever call: the progress granularity


def bm25_retriever(index: BM25Index) -> TextRetriever:
    def search(queries: Sequence[str], k: int) -> SearchResults:
        return index.search(queries, [str(i) for i in range(len(queries))], k)

    return search


def dense_retriever(
    index: DenseIndex, model: SentenceTransformer, query_prompt: str = ""
) -> TextRetriever:
    def search(queries: Sequence[str], k: int) -> SearchResults:
        vectors = encode_texts(model, list(queries), prompt=query_prompt or None)  # (n, dim)
        return index.search(vectors, [str(i) for i in range(len(queries))], k)

    return search


def corpus_dense_retriever(
    model: SentenceTransformer, corpus: Corpus, workspace: Workspace, progress: Progress
) -> TextRetriever:
    """:func:`dense_retriever` over all of ``corpus``: its embeddings from the workspace's store
    (encoded once per corpus and model), a flat index over them."""
    vectors = workspace.embeddings.encode_corpus(model, corpus, progress=progress)
    stem = EmbeddingKey.for_model(corpus, model).stem
    index = workspace.dense_index(vectors, corpus.ids, stem, DenseIndexConfig())
    return dense_retriever(index, model)


@dataclass(frozen=True)
class Candidate:
    text: str
    doc_id: str


def round_trip_ranks(
    candidates: Sequence[Candidate],
    retriever: TextRetriever,
    k: int,
    progress: Progress = no_progress,
) -> list[int | None]:
    """1-based rank of each candidate's source passage in its top ``k`` (None: not there).

    The candidates are searched ``ROUND_TRIP_BATCH`` at a time, with a progress report after
    each batch (a dense round trip encodes every query)."""
    if k <= 0:
        raise ValueError(f"round-trip k must be positive, got {k}")
    ranks: list[int | None] = []
    for start in range(0, len(candidates), ROUND_TRIP_BATCH):
        batch = candidates[start : start + ROUND_TRIP_BATCH]
        results = retriever([c.text for c in batch], k)
        for row, candidate in enumerate(batch):
            hit_ids = [doc_id for doc_id, _ in results.hits(row)]
            found = candidate.doc_id in hit_ids
            ranks.append(hit_ids.index(candidate.doc_id) + 1 if found else None)
        progress(start + len(batch), len(candidates), "round-trip filter")
    return ranks


@dataclass(frozen=True)
class QueryGenConfig:
    per_passage: int = 3  # calls per passage (seeds seed..)
    per_call: int = 1  # queries asked for in one call, one per line (the prompt says how many)
    round_trip_k: int = 10
    sampling: SamplingParams = field(
        default_factory=lambda: SamplingParams(max_tokens=48, temperature=0.8, seed=0)
    )
    max_passage_chars: int = 1500  # passages are cut to fit small context windows
    limits: QueryLimits = field(default_factory=QueryLimits)
    skip_failures: bool = False  # False: a call that fails for good stops the run

    def __post_init__(self) -> None:
        if min(self.per_passage, self.per_call, self.round_trip_k, self.max_passage_chars) <= 0:
            raise ValueError(
                "per_passage, per_call, round_trip_k and max_passage_chars must be positive"
            )


@dataclass(frozen=True)
class GeneratedQuery:
    query_id: str
    text: str
    doc_ids: tuple[str, ...]  # passages that generated it and passed the round trip
    ranks: tuple[int, ...]  # their round-trip ranks


@dataclass(frozen=True)
class QueryGeneration:
    queries: tuple[GeneratedQuery, ...]
    report: DropReport
    stats: GenerationStats
    passages: int


def _passage_text(corpus: Corpus, position: int, limit: int) -> tuple[str, str]:
    document = corpus.document(position)
    text = document.text.strip() or document.title
    return document.title, text[:limit]


def _jobs(
    corpus: Corpus, positions: Sequence[int], template: PromptTemplate, config: QueryGenConfig
) -> list[GenerationJob]:
    base_seed = config.sampling.seed or 0
    jobs = []
    for position in positions:
        title, passage = _passage_text(corpus, position, config.max_passage_chars)
        for sample in range(config.per_passage):
            params = replace(config.sampling, seed=base_seed + sample)
            jobs.append(GenerationJob(template, {"passage": passage, "title": title}, params))
    return jobs


def _parse_outputs(
    corpus: Corpus,
    positions: Sequence[int],
    outputs: Sequence[str | LLMError],
    config: QueryGenConfig,
    report: DropReport,
) -> list[Candidate]:
    def clean(source: int, output: str) -> Parsed:
        _, passage = _passage_text(corpus, positions[source], config.max_passage_chars)
        return clean_query(output, passage, config.limits)

    def split(output: str) -> list[str]:
        return split_questions(output, config.per_call) if config.per_call > 1 else whole(output)

    usable = usable_outputs(outputs, config.per_passage, clean, config.skip_failures, report, split)
    return [Candidate(text, corpus.ids[positions[source]]) for source, text in usable]


def _merge(candidates: Sequence[Candidate], ranks: Sequence[int]) -> tuple[GeneratedQuery, ...]:
    merged: dict[str, GeneratedQuery] = {}
    for candidate, rank in zip(candidates, ranks, strict=True):
        query_id = generated_id(candidate.text)
        seen = merged.get(query_id)
        if seen is None:
            merged[query_id] = GeneratedQuery(
                query_id, candidate.text, (candidate.doc_id,), (rank,)
            )
        elif candidate.doc_id not in seen.doc_ids:
            merged[query_id] = replace(
                seen, doc_ids=(*seen.doc_ids, candidate.doc_id), ranks=(*seen.ranks, rank)
            )
    return tuple(merged.values())


def generate_queries(
    client: LLMClient,
    corpus: Corpus,
    positions: Sequence[int],
    retriever: TextRetriever,
    config: QueryGenConfig | None = None,
    cache: Cache | None = None,
    template: PromptTemplate = DOC2QUERY,
    progress: Progress = no_progress,
) -> QueryGeneration:
    """Generate, clean and round-trip-filter queries for the passages at ``positions``."""
    config = config or QueryGenConfig()
    batch = generate_all(client, _jobs(corpus, positions, template, config), cache, progress)
    report = DropReport()
    candidates = _parse_outputs(corpus, positions, batch.outputs, config, report)
    progress(0, len(candidates), "round-trip filter")
    ranks = round_trip_ranks(candidates, retriever, config.round_trip_k, progress)
    survivors: list[Candidate] = []
    kept_ranks: list[int] = []
    for candidate, rank in zip(candidates, ranks, strict=True):
        if rank is None:
            report.drop(ROUND_TRIP, candidate.text)
        else:
            survivors.append(candidate)
            kept_ranks.append(rank)
    report.keep(len(survivors))
    queries = _merge(survivors, kept_ranks)
    logger.info(
        "%d passages: %d queries kept of %d generations", len(positions), len(queries), report.total
    )
    return QueryGeneration(queries, report, batch.stats, len(positions))


def write_generated_queries(
    folder: Path,
    result: QueryGeneration,
    corpus_folder: Path,
    meta: Mapping[str, object],
    split: str = "train",
) -> Path:
    """Write a BEIR folder (corpus, queries.jsonl, qrels/<split>.tsv, generation.json) atomically.

    The corpus file is hard-linked from ``corpus_folder`` when possible, else copied, so
    ``load_split(folder, split)`` works on the result directly.
    """
    source = find_corpus_file(corpus_folder)
    with atomic_path(folder) as temp:
        temp.mkdir()
        _link_or_copy(source, temp / source.name)
        with (temp / "queries.jsonl").open("w", encoding="utf-8") as handle:
            for query in result.queries:
                row = {
                    "_id": query.query_id,
                    "text": query.text,
                    "metadata": {"source": list(query.doc_ids), "rank": list(query.ranks)},
                }
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        (temp / "qrels").mkdir()
        with (temp / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as handle:
            handle.write("query-id\tcorpus-id\tscore\n")
            for query in result.queries:
                for doc_id in query.doc_ids:
                    handle.write(f"{query.query_id}\t{doc_id}\t1\n")
        summary = dict(meta) | {
            "passages": result.passages,
            "queries": len(result.queries),
            "report": result.report.to_json(),
            "generation": result.stats.to_json(),
        }
        (temp / "generation.json").write_text(json.dumps(summary, indent=2, default=str))
    return folder


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        target.hardlink_to(source)
    except OSError:
        shutil.copy2(source, target)
