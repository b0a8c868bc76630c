"""Adapt benchmark: corpus only → ``hardneg adapt`` → the test split, on collections this project
never tuned on (BEIR folders written by ``bench.collections``, outside ``../shared``).

    nice -n 5 python -m bench.adapt [--collections cranfield cisi] [--set train.steps=100]

Per collection: BM25, the base model zero-shot and the adapt run's model (adapted, or the base
model when its validation said no checkpoint beats it) on the test split, nDCG@10 and
Recall@100, and the paired t-test of the returned model against zero-shot on per-query nDCG@10
(``hardneg.core.significance``). The adapt run sees the corpus only; the test qrels are read
after it has returned its model. Writes ``bench/results/adapt.json`` after every collection.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.machine import machine_info
from hardneg.core.atomic import write_text_atomic
from hardneg.core.beir import load_split
from hardneg.core.significance import ALPHA, paired_comparison
from hardneg.core.spec import build_spec, parse_assignments
from hardneg.core.workspace import Workspace
from hardneg.service.pipelines.adapt.run import run_adapt
from hardneg.service.pipelines.adapt.spec import AdaptSpec
from hardneg.service.pipelines.context import PipelineContext
from hardneg.service.pipelines.evaluate import load_models
from hardneg.service.settings import Settings
from hardneg.trainers.evaluation import RetrievalEvaluation, evaluate_bm25, evaluate_dense

logger = logging.getLogger("bench.adapt")
REPO = Path(__file__).resolve().parents[1]
METRICS = ("ndcg@10", "recall@100")
DEFAULT_SPEC: dict[str, object] = {
    "queries.passages": 300,
    "queries.per_passage": 1,
    "queries.per_call": 3,
    "queries.bootstrap_passages": 6,
    "queries.max_passage_chars": 400,
    "train.val_share": 0.25,
    "train.steps": 300,
    "train.eval_steps": 25,
}


def _means(evaluation: RetrievalEvaluation) -> dict[str, float]:
    return {m: round(float(evaluation.evaluation.mean[m]), 4) for m in METRICS}


def _per_query(evaluation: RetrievalEvaluation, metric: str) -> dict[str, float]:
    return {q: float(v[metric]) for q, v in evaluation.evaluation.per_query.items()}


def run_collection(
    name: str,
    folder: Path,
    runs: Path,
    overrides: dict[str, object],
    settings: Settings,
    split_name: str = "test",
) -> dict[str, Any]:
    spec = build_spec(AdaptSpec, [overrides], "--set")
    started = time.perf_counter()
    result = run_adapt(spec, str(folder), PipelineContext(settings, runs / name))
    adapt_seconds = time.perf_counter() - started
    # the evaluation split is read from here on only
    split = load_split(folder, split_name)
    workspace = Workspace(settings.home)
    bm25 = evaluate_bm25(split, workspace)
    base_q, base_d = load_models(result.report["base_model"], settings.device, "torch", workspace)
    zero_shot = evaluate_dense(split, base_d, workspace, query_model=base_q)
    query_model, doc_model = load_models(result.model, settings.device, "torch", workspace)
    adapted = evaluate_dense(split, doc_model, workspace, name="adapted", query_model=query_model)
    tests = {
        metric: paired_comparison(
            "adapted", _per_query(adapted, metric), "zero-shot", _per_query(zero_shot, metric)
        )
        for metric in METRICS
    }
    ndcg = tests["ndcg@10"]
    report = result.report
    queries = report["queries"]
    return {
        "documents": len(split.corpus),
        "split": split_name,
        "test_queries": len(split.queries),
        "bm25": _means(bm25),
        "zero_shot": _means(zero_shot),
        "adapted": _means(adapted),
        "p_value": round(ndcg.p_value, 6),
        "delta_ndcg@10": round(ndcg.delta, 4),
        "ci95_ndcg@10": [round(ndcg.ci95[0], 4), round(ndcg.ci95[1], 4)],
        "recall@100_test": tests["recall@100"].to_json(),
        "above_zero_shot": ndcg.delta > 0 and ndcg.p_value < ALPHA,
        "below_zero_shot_beyond_noise": ndcg.delta < 0 and ndcg.p_value < ALPHA,
        "returned": "adapted" if result.adapted else "base model (do-no-harm)",
        "decision": report["decision"],
        "validation": report["validation"],
        "validation_curve": report["training"]["validation_curve"],
        "queries_generated": queries["generated"],
        "queries_kept": queries["kept"],
        "kept_share": queries["kept_share"],
        "dropped": queries["dropped"],
        "train_queries": queries["train_queries"],
        "val_queries": queries["val_queries"],
        "prompt": {k: v for k, v in queries["prompt"].items() if k != "bootstrap"},
        "teacher": report["teacher"],
        "trims": report["trims"],
        "stage_seconds": report["stage_seconds"],
        "wall_seconds": round(adapt_seconds, 1),
        "spec": spec.model_dump(exclude={"llm"}),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collections", nargs="+", default=["cranfield", "cisi"])
    parser.add_argument("--root", type=Path, default=Path("/work/data/collections"))
    parser.add_argument(
        "--split",
        default="test",
        help="the split scored after the run (train: a labelled collection's real training "
        "queries, for developing the recipe without reading its test split)",
    )
    parser.add_argument("--runs", type=Path, default=Path("/work/data/adapt-runs"))
    parser.add_argument("--home", type=Path, default=Path("/work/data/hardneg-home"))
    parser.add_argument("--set", action="append", default=[], help="spec field: key=value")
    parser.add_argument("--output", type=Path, default=REPO / "bench/results/adapt.json")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    overrides = DEFAULT_SPEC | parse_assignments(args.set)
    settings = Settings(home=args.home)
    previous = json.loads(args.output.read_text()) if args.output.is_file() else {}
    results: dict[str, Any] = {
        "command": "python -m bench.adapt " + " ".join(argv if argv is not None else sys.argv[1:]),
        "niceness": os.nice(0),
        "overrides": overrides,
        "machine": machine_info() | {"load_average_start": os.getloadavg()},
        "collections": dict(previous.get("collections", {})),
    }
    for name in args.collections:
        logger.info("collection %s", name)
        results["collections"][name] = run_collection(
            name, args.root / name, args.runs, overrides, settings, args.split
        )
        results["machine"]["load_average_end"] = os.getloadavg()
        # another process may have written other collections meanwhile: keep them
        latest = json.loads(args.output.read_text()) if args.output.is_file() else {}
        merged = latest.get("collections", {}) | {name: results["collections"][name]}
        results["collections"] = merged
        write_text_atomic(args.output, json.dumps(results, indent=2, default=str))
        logger.info("%s: %s", name, json.dumps(results["collections"][name])[:600])


if __name__ == "__main__":
    main()
