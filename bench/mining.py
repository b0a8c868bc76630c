"""Mining benchmark: SciFact train, all-MiniLM-L6-v2, ours against the usual tools, same run.

    python -m bench.mining [--data DIR] [--output bench/results/mining.json] [--ce-queries 200]
                           [--repeats 3] [--only bm25|probe]

- BM25 (bench/mining_bm25.py): our miner (numpy BM25 index, top-N, positive scores, filters)
  against the same mining done with rank-bm25's BM25Okapi on the same tokens; ``--only bm25``
  reruns just this section. rank-bm25's Okapi idf differs from Lucene's, so the two pick partly
  different negatives.
- Dense: our miner, cold (empty data directory and cache) and warm (nothing changed), against
  ``sentence_transformers.util.mine_hard_negatives`` with equivalent parameters; the overlap of
  the negatives both pick.
- Cross-encoder: a MiniLM cross-encoder trained here for a few steps (none can be installed
  offline) rescoring the BM25 + dense pool of a subset of queries.
- The false-negative probe (bench/mining_probe.py): one of two or more positives hidden from the
  miner, per method and filter setting; how often it comes back as a negative. ``--only probe``
  reruns just this section (with a cross-encoder trained for it).

Wall times come with process CPU times: the box is shared, and CPU seconds are what other
processes disturb least.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from bench.machine import machine_info
from bench.mining_bm25 import bench_bm25
from bench.mining_probe import bench_probe
from bench.mining_support import FILTERS, Clock, clock, negative_overlap, ratio, stats_summary
from hardneg.core.atomic import write_text_atomic
from hardneg.core.beir import BeirSplit, load_split
from hardneg.core.bm25 import BM25Index
from hardneg.core.workspace import Workspace
from hardneg.miners.candidates import positive_ids_of
from hardneg.miners.cross_encoder import mine_cross_encoder
from hardneg.miners.dense import mine_dense
from hardneg.miners.disk_cache import DiskCache
from hardneg.miners.filters import normalize_text
from hardneg.miners.job import MiningJob
from hardneg.miners.spec import MineSpec

logger = logging.getLogger("bench.mining")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "beir" / "scifact"
OUR_BATCH = 64
ST_BATCH = 32  # mine_hard_negatives' default


def st_mine(split: BeirSplit) -> tuple[Clock, dict[str, set[str]]]:
    """sentence-transformers' mine_hard_negatives with the parameters FILTERS stands for."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    from hardneg.core.encoders import load_encoder

    model = load_encoder()
    texts = split.corpus.full_texts()
    pairs = [
        (split.queries[q], texts[split.corpus.position(d)])
        for q in split.queries
        for d in positive_ids_of(split, q)
    ]
    dataset = Dataset.from_dict({"query": [q for q, _ in pairs], "positive": [p for _, p in pairs]})
    with clock() as took:
        mined = mine_hard_negatives(
            dataset,
            model,
            corpus=texts,
            num_negatives=FILTERS.num_negatives,
            relative_margin=FILTERS.relative_margin,
            sampling_strategy="top",
            batch_size=ST_BATCH,
            use_faiss=True,
            output_format="labeled-list",
            verbose=False,
        )
    negatives: dict[str, set[str]] = {}
    for row in mined:
        docs = [d for d, label in zip(row["positive"], row["labels"], strict=True) if not label]
        negatives.setdefault(row["query"], set()).update(normalize_text(d) for d in docs)
    return took, negatives


def bench_dense(split: BeirSplit, work: Path) -> tuple[dict[str, object], Path]:
    st_clock, st_negatives = st_mine(split)
    home = work / "dense-home"
    spec = MineSpec(method="dense", filters=FILTERS, batch_size=OUR_BATCH)
    job = MiningJob(spec, split, Workspace(home), DiskCache(work / "dense-cache"))
    with clock() as cold:
        run = mine_dense(job)
    with clock() as warm:
        again = mine_dense(job)
    assert again.rows == run.rows and again.provenance["cache_hit"] is True
    result = {
        "cold_time_ratio_vs_st": ratio(cold.wall, st_clock.wall),
        "cold_cpu_ratio_vs_st": ratio(cold.cpu, st_clock.cpu),
        "negative_overlap_with_st": negative_overlap(run, st_negatives),
        "warm_speedup": ratio(cold.wall, warm.wall),
        "ours_cold": cold.to_json(),
        "ours_warm": warm.to_json(),
        "sentence_transformers": st_clock.to_json(),
        "batch_size": {"ours": OUR_BATCH, "sentence_transformers": ST_BATCH},
        "timing_note": "ours includes loading the model inside mine_dense; st gets it loaded",
        "stats": stats_summary(run, split, work / "stats"),
    }
    return result, home


def train_cross_encoder(split: BeirSplit, folder: Path, seed: int = 0) -> None:
    """MiniLM + a 1-logit head, top 2 layers trained with BCE on (query, positive) vs
    (query, BM25 negative) pairs for 2 epochs; saved to ``folder``."""
    import torch
    from sentence_transformers import CrossEncoder

    from hardneg.core.encoders import resolve_model

    index = BM25Index.build(split.corpus)
    query_ids = list(split.queries)
    hits = index.search([split.queries[q] for q in query_ids], query_ids, 8)
    texts = split.corpus.full_texts()
    pairs: list[tuple[str, str, float]] = []
    for row, query_id in enumerate(query_ids):
        judged = split.qrels[query_id]
        query = split.queries[query_id]
        pairs += [(query, texts[split.corpus.position(d)], 1.0) for d in judged if judged[d] > 0]
        negatives = [d for d, _ in hits.hits(row) if d not in judged][:2]
        pairs += [(query, texts[split.corpus.position(d)], 0.0) for d in negatives]
    torch.manual_seed(seed)
    model = CrossEncoder(resolve_model(None), num_labels=1, max_length=128, device="cpu")
    frozen = ("embeddings.", *(f"encoder.layer.{i}." for i in range(4)))
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(not any(part in name for part in frozen))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-4)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(2):
        order = torch.randperm(len(pairs), generator=generator).tolist()
        for start in range(0, len(order), 16):
            batch = [pairs[i] for i in order[start : start + 16]]
            logits = model(model.preprocess([(q, d) for q, d, _ in batch]))["scores"].view(-1)
            labels = torch.tensor([label for _, _, label in batch])  # (batch,)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    model.eval()
    model.save_pretrained(str(folder))


def subset(split: BeirSplit, query_ids: list[str]) -> BeirSplit:
    queries = {q: split.queries[q] for q in query_ids}
    return BeirSplit(split.name, split.corpus, queries, {q: split.qrels[q] for q in query_ids})


def bench_cross_encoder(
    split: BeirSplit, home: Path, work: Path, n_queries: int
) -> dict[str, object]:
    ordered = sorted(split.queries)
    train_ids, mine_ids = ordered[n_queries : n_queries + 60], ordered[:n_queries]
    folder = work / "cross-encoder"
    with clock() as trained:
        train_cross_encoder(subset(split, train_ids), folder)
    spec = MineSpec(
        method="cross-encoder",
        filters=FILTERS,
        cross_encoder=str(folder),
        cross_encoder_max_length=256,
        batch_size=OUR_BATCH,
        pool_depth=10,
    )
    job = MiningJob(
        spec,
        subset(split, mine_ids),
        Workspace(home),  # the dense run's corpus embeddings are reused, not re-encoded
        DiskCache(work / "ce-cache"),
    )
    with clock() as mined:
        run = mine_cross_encoder(job)
    return {
        "queries": n_queries,
        "pool_depth": spec.pool_depth,
        "train": trained.to_json(),
        "mine": mined.to_json(),
        "negative_sources": run.provenance.get("negative_sources"),
        "stats": stats_summary(run, job.split, work / "stats"),
    }


def run_bm25_only(data: Path, output: Path, repeats: int) -> dict[str, object]:
    """Rerun the BM25 section only; the other sections of ``output`` are kept as they were."""
    split = load_split(data, "train")
    with tempfile.TemporaryDirectory(prefix="hardneg-bench-mining-") as temp:
        bm25 = bench_bm25(split, Path(temp), repeats)
    result: dict[str, Any] = json.loads(output.read_text()) if output.is_file() else {}
    result["bm25_speedup_vs_rank_bm25"] = bm25["speedup"]
    result["bm25"] = bm25
    return result


def run_probe_only(data: Path, output: Path, home: Path | None) -> dict[str, object]:
    """Rerun the probe section only (training its cross-encoder); other sections are kept, less
    the judged-negative fraction earlier runs reported (0 by construction, so removed).
    ``home``: a data directory whose cached corpus embeddings may be reused (read, not timed)."""
    split = load_split(data, "train")
    with tempfile.TemporaryDirectory(prefix="hardneg-bench-probe-") as temp:
        work = Path(temp)
        # the cross-encoder learns from queries with one positive: never a probed query's
        single = [q for q in sorted(split.queries) if len(positive_ids_of(split, q)) < 2]
        train_cross_encoder(subset(split, single[:60]), work / "cross-encoder")
        probe = bench_probe(split, home or work / "home", work, work / "cross-encoder")
    result: dict[str, Any] = json.loads(output.read_text()) if output.is_file() else {}
    result.pop("false_negative_fraction", None)
    for section in ("bm25", "dense", "cross_encoder"):
        stats = (result.get(section) or {}).get("stats") or {}
        stats.pop("false_negative_fraction", None)
    result["false_negative_probe"] = probe
    result["machine_probe"] = machine_info()
    return result


def run(data: Path, ce_queries: int, repeats: int) -> dict[str, object]:
    split = load_split(data, "train")
    logger.info("SciFact train: %d docs, %d queries", len(split.corpus), len(split.queries))
    with tempfile.TemporaryDirectory(prefix="hardneg-bench-mining-") as temp:
        work = Path(temp)
        bm25 = bench_bm25(split, work, repeats)
        logger.info("bm25 done: %s", bm25["speedup"])
        dense, home = bench_dense(split, work)
        logger.info("dense done: %s", dense["cold_time_ratio_vs_st"])
        cross = bench_cross_encoder(split, home, work, ce_queries)
        probe = bench_probe(split, home, work, work / "cross-encoder")
    return {
        "bm25_speedup_vs_rank_bm25": bm25["speedup"],
        "dense_cold_time_ratio_vs_st": dense["cold_time_ratio_vs_st"],
        "dense_negative_overlap_with_st": dense["negative_overlap_with_st"],
        "dense_warm_speedup": dense["warm_speedup"],
        "false_negative_probe": probe,
        "filters": FILTERS.model_dump(),
        "model": "all-MiniLM-L6-v2",
        "dataset": {"name": "scifact", "split": "train", "queries": len(split.queries)},
        "bm25": bm25,
        "dense": dense,
        "cross_encoder": cross,
        "machine": machine_info(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "mining.json")
    parser.add_argument("--ce-queries", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="alternating BM25 runs per side")
    parser.add_argument(
        "--home", type=Path, help="--only probe: reuse this data directory's corpus embeddings"
    )
    parser.add_argument(
        "--only",
        choices=["bm25", "probe"],
        help="rerun one section, merged into --output's other ones",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.only == "bm25":
        result = run_bm25_only(args.data, args.output, args.repeats)
    elif args.only == "probe":
        result = run_probe_only(args.data, args.output, args.home)
    else:
        result = run(args.data, args.ce_queries, args.repeats)
    write_text_atomic(args.output, json.dumps(result, indent=2, default=str))
    logger.info("wrote %s", args.output)


if __name__ == "__main__":
    main()
