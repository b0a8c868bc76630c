"""Evaluate BM25 or a dense model on a BEIR split, reusing stored indexes and embeddings."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hardneg.core.beir import BeirSplit
from hardneg.core.bm25 import BM25Index, BM25Params
from hardneg.core.dense import DenseIndex, DenseIndexConfig
from hardneg.core.embeddings import EmbeddingKey
from hardneg.core.encoders import encode_texts
from hardneg.core.metrics import METRIC_NAMES, Evaluation, evaluate
from hardneg.core.progress import Progress, no_progress
from hardneg.core.results import SearchResults
from hardneg.core.workspace import Workspace

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

EVAL_DEPTH = 100  # every reported metric is cut at <= 100


@dataclass(frozen=True)
class RetrievalEvaluation:
    retriever: str
    split: str
    evaluation: Evaluation
    results: SearchResults
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        return {
            "retriever": self.retriever,
            "split": self.split,
            "num_queries": self.evaluation.num_queries,
            "metrics": self.evaluation.mean,
            "seconds": self.seconds,
        }


def evaluate_bm25(
    split: BeirSplit,
    workspace: Workspace,
    params: BM25Params | None = None,
    progress: Progress = no_progress,
) -> RetrievalEvaluation:
    params = params or BM25Params()
    started = time.perf_counter()
    folder = workspace.bm25_dir(split.corpus.fingerprint, params)
    index = BM25Index.load_or_build(folder, split.corpus, params, progress)
    indexed = time.perf_counter()
    query_ids = list(split.queries)
    results = index.search([split.queries[q] for q in query_ids], query_ids, EVAL_DEPTH, progress)
    searched = time.perf_counter()
    evaluation = evaluate(split.qrels, results.to_run(), METRIC_NAMES)
    seconds = {"index": indexed - started, "search": searched - indexed}
    return RetrievalEvaluation("bm25", split.name, evaluation, results, seconds)


def dense_search(
    split: BeirSplit,
    model: SentenceTransformer,
    workspace: Workspace,
    k: int,
    index_config: DenseIndexConfig | None = None,
    query_prompt: str = "",
    corpus_prompt: str = "",
    progress: Progress = no_progress,
) -> tuple[SearchResults, dict[str, float]]:
    """Top-k dense hits for the split's queries; corpus embeddings come from the store."""
    config = index_config or DenseIndexConfig()
    started = time.perf_counter()
    vectors = workspace.embeddings.encode_corpus(
        model, split.corpus, corpus_prompt, progress=progress
    )
    encoded = time.perf_counter()
    key = EmbeddingKey.for_model(split.corpus, model, corpus_prompt)
    structure = {"kind": config.kind, "nlist": config.nlist, "hnsw_m": config.hnsw_m}
    folder = workspace.faiss_dir(key.stem, structure)
    index = DenseIndex.load_or_build(folder, vectors, split.corpus.ids, {"stem": key.stem}, config)
    indexed = time.perf_counter()
    query_ids = list(split.queries)
    query_vectors = encode_texts(
        model, [split.queries[q] for q in query_ids], prompt=query_prompt or None
    )
    results = index.search(query_vectors, query_ids, k, progress=progress)
    searched = time.perf_counter()
    seconds = {
        "corpus_embeddings": encoded - started,
        "index": indexed - encoded,
        "search": searched - indexed,
    }
    return results, seconds


def evaluate_dense(
    split: BeirSplit,
    model: SentenceTransformer,
    workspace: Workspace,
    index_config: DenseIndexConfig | None = None,
    query_prompt: str = "",
    corpus_prompt: str = "",
    name: str = "dense",
    progress: Progress = no_progress,
) -> RetrievalEvaluation:
    results, seconds = dense_search(
        split, model, workspace, EVAL_DEPTH, index_config, query_prompt, corpus_prompt, progress
    )
    evaluation = evaluate(split.qrels, results.to_run(), METRIC_NAMES)
    return RetrievalEvaluation(name, split.name, evaluation, results, seconds)
