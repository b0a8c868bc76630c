"""Retrieval metrics computed with pytrec_eval (trec_eval's C code).

Conventions follow BEIR: a document whose id equals the query id is ignored
(``ignore_identical_ids``), and relevance grades > 0 count as relevant. Unlike BEIR, a judged
query with no retrieved documents scores 0 instead of silently dropping out of the mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pytrec_eval

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]

METRIC_NAMES = ("ndcg@10", "recall@100", "mrr@10", "p@10", "map@100")

# our name -> (trec_eval measure, key in pytrec_eval's output, run depth the measure sees)
_MEASURES: dict[str, tuple[str, str, int | None]] = {
    "ndcg@10": ("ndcg_cut.10", "ndcg_cut_10", None),
    "recall@100": ("recall.100", "recall_100", None),
    "mrr@10": ("recip_rank", "recip_rank", 10),
    "p@10": ("P.10", "P_10", None),
    "map@100": ("map_cut.100", "map_cut_100", None),
}


@dataclass(frozen=True)
class Evaluation:
    """Mean metrics over every judged query, and the same metrics per query."""

    mean: dict[str, float]
    per_query: dict[str, dict[str, float]]
    num_queries: int

    def to_dict(self) -> dict[str, object]:
        return {"mean": self.mean, "num_queries": self.num_queries, "per_query": self.per_query}


def _top(run: Mapping[str, float], depth: int | None) -> dict[str, float]:
    """A copy of one query's run, cut to its ``depth`` best documents."""
    items = [(doc, float(score)) for doc, score in run.items()]
    if depth is not None and len(items) > depth:
        # trec_eval ranks by score, ties broken by doc id descending; cut the same way
        items.sort(key=lambda item: (item[1], item[0]), reverse=True)
        items = items[:depth]
    return dict(items)


def evaluate(
    qrels: Qrels,
    run: Run,
    metrics: tuple[str, ...] = METRIC_NAMES,
    ignore_identical_ids: bool = True,
) -> Evaluation:
    """Score ``run`` against ``qrels``. Neither argument is modified."""
    unknown = [m for m in metrics if m not in _MEASURES]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {list(_MEASURES)}")
    judged = {qid: {doc: int(g) for doc, g in docs.items()} for qid, docs in qrels.items() if docs}
    cleaned: dict[str, dict[str, float]] = {}
    for qid in judged:
        docs = run.get(qid, {})
        cleaned[qid] = {
            d: float(s) for d, s in docs.items() if not (ignore_identical_ids and d == qid)
        }

    per_query: dict[str, dict[str, float]] = {qid: {} for qid in judged}
    by_depth: dict[int | None, list[str]] = {}
    for name in metrics:
        by_depth.setdefault(_MEASURES[name][2], []).append(name)
    for depth, names in by_depth.items():
        measures = {_MEASURES[n][0] for n in names}
        evaluator = pytrec_eval.RelevanceEvaluator(judged, measures)
        scored = evaluator.evaluate(
            {qid: _top(docs, depth) for qid, docs in cleaned.items() if docs}
        )
        for qid in judged:
            values = scored.get(qid, {})
            for name in names:
                per_query[qid][name] = float(values.get(_MEASURES[name][1], 0.0))

    count = len(judged)
    mean = {
        name: (sum(per_query[q][name] for q in judged) / count if count else 0.0)
        for name in metrics
    }
    return Evaluation(mean=mean, per_query=per_query, num_queries=count)
