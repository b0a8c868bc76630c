"""The ``evaluate`` job kind: run ``pipelines.evaluate`` on a stored corpus.

BM25 candidate lists (the top 100 per query) are cached in Redis under the ``candidates``
namespace, keyed by the corpus content version, split, BM25 parameters and depth: a re-run
(``force``, or after the job record is gone) skips indexing and search. Dense runs are not
cached here: their corpus embeddings are already stored on disk by the embedding store.
"""

from __future__ import annotations

import json
import logging
import zlib
from pathlib import Path

from hardneg.core.atomic import atomic_path, write_text_atomic
from hardneg.core.cache import cache_key
from hardneg.service.jobs.context import JobContext, JobOutcome, require_corpus, resolve_model_refs
from hardneg.service.specs import EVAL_DEPTH, EvaluateSpec

logger = logging.getLogger(__name__)

CANDIDATES_NAMESPACE = "candidates"


MODEL_FIELDS = ("model",)


Run = dict[str, dict[str, float]]


def _encode_run(run: Run) -> bytes:
    return zlib.compress(json.dumps(run, separators=(",", ":")).encode())


def _decode_run(data: bytes) -> Run:
    decoded: Run = json.loads(zlib.decompress(data))
    return decoded


def _candidates_key(spec: EvaluateSpec, version: str) -> str:
    parts = {"corpus": version, "split": spec.split, "k1": spec.bm25.k1, "b": spec.bm25.b}
    return cache_key(CANDIDATES_NAMESPACE, parts | {"retriever": "bm25", "depth": EVAL_DEPTH})


def _write_results(
    path: Path, run: Run, per_query: dict[str, dict[str, float]], top_k: int
) -> None:
    with atomic_path(path) as temp, temp.open("w", encoding="utf-8") as handle:
        for query_id in sorted(per_query):
            ranked = sorted(run.get(query_id, {}).items(), key=lambda h: (-h[1], h[0]))[:top_k]
            row = {
                "query_id": query_id,
                "metrics": per_query[query_id],
                "hits": [{"id": doc, "score": score} for doc, score in ranked],
            }
            handle.write(json.dumps(row) + "\n")


def run(params: EvaluateSpec, context: JobContext) -> JobOutcome:
    # Heavy imports (torch, faiss, bm25s) happen in the worker only.
    from hardneg.core.beir import load_qrels
    from hardneg.core.metrics import evaluate
    from hardneg.service.pipelines.evaluate import run_evaluation

    corpus = require_corpus(context)
    key = _candidates_key(params, corpus.version or "") if params.retriever == "bm25" else None
    cached = context.cache.get(key) if key else None
    summary: dict[str, object]
    if cached is not None:
        context.progress(0, 1, "candidates from cache")
        run_hits = _decode_run(cached)
        qrels = load_qrels(corpus.path / "qrels" / f"{params.split}.tsv")
        evaluation = evaluate(qrels, run_hits)
        summary = {"retriever": "bm25", "split": params.split, "seconds": {}}
        context.progress(1, 1, "candidates from cache")
    else:
        spec = params
        if params.retriever == "dense":
            with_model = params.model_copy(update={"model": params.model or context.settings.model})
            spec = resolve_model_refs(with_model, MODEL_FIELDS, context.settings)
        result = run_evaluation(spec, str(corpus.path), context.settings, context.progress)
        run_hits = result.results.to_run()
        evaluation = result.evaluation
        summary = {"retriever": result.retriever, "split": result.split, "seconds": result.seconds}
        if key:
            context.cache.set(key, _encode_run(run_hits))
    summary |= {
        "num_queries": evaluation.num_queries,
        "metrics": evaluation.mean,
        "candidates_cached": cached is not None,
    }
    metrics_path = context.output_dir / "metrics.json"
    write_text_atomic(metrics_path, json.dumps(summary, indent=2))
    results_path = context.output_dir / "results.jsonl"
    _write_results(results_path, run_hits, evaluation.per_query, params.top_k)
    return JobOutcome(
        stats=summary,
        artifacts={"metrics.json": metrics_path, "results.jsonl": results_path},
        results="results.jsonl",
    )
