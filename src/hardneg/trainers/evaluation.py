"""Evaluate BM25 or a dense model on a BEIR split, reusing stored indexes and embeddings."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hardneg.core.beir import BeirSplit, Corpus, load_split
from hardneg.core.bm25 import BM25Params
from hardneg.core.dense import DenseIndexConfig
from hardneg.core.embeddings import EmbeddingKey
from hardneg.core.encoders import encode_texts
from hardneg.core.index_params import DenseSearch
from hardneg.core.metrics import METRIC_NAMES, Evaluation, evaluate
from hardneg.core.progress import Progress, no_progress
from hardneg.core.results import SearchResults
from hardneg.core.workspace import Workspace
from hardneg.trainers.encoding import eval_mode

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.cross_encoder import CrossEncoder

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
    started = time.perf_counter()
    index = workspace.bm25_index(split.corpus, params, progress)
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
    search: DenseSearch | None = None,
    progress: Progress = no_progress,
    query_model: SentenceTransformer | None = None,
) -> tuple[SearchResults, dict[str, float]]:
    """Top-k dense hits for the split's queries; corpus embeddings come from the store.

    ``model`` encodes the corpus; ``query_model`` (default ``model``) encodes the queries, for
    dual encoders such as ADORE's (trained query encoder, frozen document encoder).
    """
    search = search or DenseSearch()
    started = time.perf_counter()
    vectors = workspace.embeddings.encode_corpus(
        model, split.corpus, search.corpus_prompt, search.batch_size, progress=progress
    )
    encoded = time.perf_counter()
    key = EmbeddingKey.for_model(split.corpus, model, search.corpus_prompt)
    index = workspace.dense_index(vectors, split.corpus.ids, key.stem, search.index)
    indexed = time.perf_counter()
    query_ids = list(split.queries)
    query_vectors = encode_texts(
        query_model if query_model is not None else model,
        [split.queries[q] for q in query_ids],
        search.batch_size,
        search.query_prompt or None,
        progress,
        "encoding queries",
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
    search: DenseSearch | None = None,
    name: str = "dense",
    progress: Progress = no_progress,
    query_model: SentenceTransformer | None = None,
) -> RetrievalEvaluation:
    found = dense_search(split, model, workspace, EVAL_DEPTH, search, progress, query_model)
    results, seconds = found
    evaluation = evaluate(split.qrels, results.to_run(), METRIC_NAMES)
    return RetrievalEvaluation(name, split.name, evaluation, results, seconds)


def corpus_subset(split: BeirSplit, size: int, seed: int = 0) -> BeirSplit:
    """The split over a smaller corpus: every judged document plus random others, ``size`` in all
    (at least the judged ones). Cheap intermediate evaluation; its scores are optimistic."""
    corpus = split.corpus
    judged = {doc for docs in split.qrels.values() for doc in docs if doc in corpus}
    if size >= len(corpus):
        return split
    others = [i for i in range(len(corpus)) if corpus.ids[i] not in judged]
    rng = np.random.default_rng(seed)
    extra = max(0, size - len(judged))
    picked = rng.choice(len(others), size=min(extra, len(others)), replace=False)
    keep = sorted([corpus.position(d) for d in judged] + [others[int(i)] for i in picked])
    subset = Corpus.from_documents([corpus.document(i) for i in keep])
    return BeirSplit(split.name, subset, split.queries, split.qrels)


class _SplitCache:
    """Splits of one BEIR folder, loaded once, sharing one corpus."""

    def __init__(self, folder: Path, corpus: Corpus | None = None) -> None:
        self.folder = folder
        self._corpus = corpus
        self._splits: dict[str, BeirSplit] = {}

    def names(self) -> set[str]:
        """Every split with a qrels file, the standard three and any other (the experiment's
        ``val``, adapt's validation slice): a dev split of any name can pick the checkpoint."""
        return {path.stem for path in (self.folder / "qrels").glob("*.tsv")}

    def get(self, name: str, corpus_size: int, seed: int) -> BeirSplit:
        if name not in self._splits:
            split = load_split(self.folder, name, self._corpus)
            self._corpus = split.corpus
            self._splits[name] = split
        split = self._splits[name]
        return corpus_subset(split, corpus_size, seed) if corpus_size else split


class DenseEvaluator:
    """Evaluates a (dual) bi-encoder on splits of one BEIR folder: the trainers' evaluator.

    ``doc_model`` encodes the corpus (cached in the workspace by weights fingerprint, so a frozen
    document side is encoded once); ``query_model`` defaults to ``doc_model``.
    """

    def __init__(
        self,
        folder: Path,
        workspace: Workspace,
        doc_model: SentenceTransformer,
        query_model: SentenceTransformer | None = None,
        index_config: DenseIndexConfig | None = None,
        query_prompt: str = "",
        corpus_prompt: str = "",
        corpus: Corpus | None = None,
        progress: Progress = no_progress,
        seed: int = 0,
    ) -> None:
        self._splits = _SplitCache(folder, corpus)
        self.workspace = workspace
        self.doc_model, self.query_model = doc_model, query_model
        self.search = DenseSearch(index_config or DenseIndexConfig(), query_prompt, corpus_prompt)
        self.progress, self.seed = progress, seed

    def splits(self) -> set[str]:
        return self._splits.names()

    def __call__(self, split: str, corpus_size: int = 0) -> dict[str, float]:
        data = self._splits.get(split, corpus_size, self.seed)
        query_model = self.query_model
        with contextlib.ExitStack() as stack:
            stack.enter_context(eval_mode(self.doc_model))
            if query_model is not None:
                stack.enter_context(eval_mode(query_model))
            result = evaluate_dense(
                data,
                self.doc_model,
                self.workspace,
                self.search,
                progress=self.progress,
                query_model=query_model,
            )
        return dict(result.evaluation.mean)


def evaluate_reranker(
    split: BeirSplit,
    cross_encoder: CrossEncoder,
    workspace: Workspace,
    depth: int = 100,
    params: BM25Params | None = None,
    batch_size: int = 32,
    progress: Progress = no_progress,
) -> RetrievalEvaluation:
    """Rerank BM25's top ``depth`` per query with ``cross_encoder`` and score the new order."""
    first = evaluate_bm25(split, workspace, params, progress)
    started = time.perf_counter()
    run: dict[str, dict[str, float]] = {}
    for row, query_id in enumerate(first.results.query_ids):
        hits = [int(p) for p in first.results.positions[row, :depth] if p >= 0]
        if not hits:
            run[query_id] = {}
            continue
        pairs = [(split.queries[query_id], split.corpus.document(p).full_text) for p in hits]
        with eval_mode(cross_encoder):
            scores = cross_encoder.predict(pairs, batch_size=batch_size, show_progress_bar=False)
        run[query_id] = {
            split.corpus.ids[p]: float(s) for p, s in zip(hits, np.asarray(scores), strict=True)
        }
        progress(row + 1, len(first.results.query_ids), "reranking")
    evaluation = evaluate(split.qrels, run, METRIC_NAMES)
    seconds = first.seconds | {"rerank": time.perf_counter() - started}
    return RetrievalEvaluation("rerank", split.name, evaluation, first.results, seconds)


class RerankEvaluator:
    """Evaluates a cross-encoder reranking BM25's top ``depth`` on splits of one BEIR folder."""

    def __init__(
        self,
        folder: Path,
        workspace: Workspace,
        cross_encoder: CrossEncoder,
        depth: int = 100,
        progress: Progress = no_progress,
        seed: int = 0,
    ) -> None:
        self._splits = _SplitCache(folder)
        self.workspace, self.cross_encoder = workspace, cross_encoder
        self.depth, self.progress, self.seed = depth, progress, seed

    def splits(self) -> set[str]:
        return self._splits.names()

    def __call__(self, split: str, corpus_size: int = 0) -> dict[str, float]:
        data = self._splits.get(split, corpus_size, self.seed)
        result = evaluate_reranker(
            data, self.cross_encoder, self.workspace, self.depth, progress=self.progress
        )
        return dict(result.evaluation.mean)
