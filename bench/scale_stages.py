"""One stage of bench/scale.py, run in its own process so its peak RSS is its own.

    python -m bench.scale_stages STAGE SIZE WORK_DIR

Prints one JSON line: the stage's wall seconds (the stage's work, the interpreter's start-up and
imports left out), its bytes on disk, a breakdown, and its peak RSS: ``vm_hwm_kib``, the VmHWM
of ``/proc/self/status`` (this address space's own high-water mark; ``ru_maxrss`` would start
from the parent's RSS at the fork).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hardneg.core.beir import find_corpus_file, load_corpus, load_split
from hardneg.core.bm25 import BM25Index, BM25Params
from hardneg.core.dense import DenseIndex
from hardneg.core.index_params import DenseIndexConfig, IndexKind
from hardneg.miners.bm25 import search_candidates
from hardneg.miners.filters import FilterConfig
from hardneg.miners.selection import select_from_candidates

DEPTH = 100
# the project's defaults, but HNSW with M=16 (FAISS's efConstruction 40) and efSearch 128
DENSE = {
    "flat": DenseIndexConfig(kind="flat"),
    "ivf": DenseIndexConfig(kind="ivf"),
    "hnsw": DenseIndexConfig(kind="hnsw", hnsw_m=16, ef_search=128),
}


def folder_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def paths(work: Path, size: int) -> dict[str, Path]:
    return {
        "data": work / f"corpus-{size}",
        "bm25": work / f"bm25-{size}",
        "embeddings": work / f"embeddings-{size}.npy",
        "queries": work / "query-embeddings.npy",
        "faiss": work / f"faiss-{size}",
        "found": work / f"found-{size}",
    }


def bm25_index(size: int, where: dict[str, Path]) -> dict[str, object]:
    started = time.perf_counter()
    corpus = load_corpus(find_corpus_file(where["data"]))
    loaded = time.perf_counter()
    index = BM25Index.build(corpus, BM25Params())
    built = time.perf_counter()
    index.save(where["bm25"], corpus.fingerprint)
    done = time.perf_counter()
    return {
        "wall_s": done - started,
        "disk_bytes": folder_bytes(where["bm25"]),
        "load_corpus_s": loaded - started,
        "build_s": built - loaded,
        "save_s": done - built,
        "nnz": len(index.scores.data),
        "vocabulary": len(index.vocab),
    }


def bm25_mining(size: int, where: dict[str, Path]) -> dict[str, object]:
    started = time.perf_counter()
    split = load_split(where["data"], "test")
    index = BM25Index.load(where["bm25"], split.corpus)
    loaded = time.perf_counter()
    lists = search_candidates(split, index, DEPTH)
    searched = time.perf_counter()
    run = select_from_candidates(split, lists, FilterConfig(), "bm25")
    done = time.perf_counter()
    return {
        "wall_s": done - started,
        "disk_bytes": len(lists.to_bytes()),  # the cached candidate lists
        "load_s": loaded - started,
        "search_s": searched - loaded,
        "select_s": done - searched,
        "queries": len(lists.query_ids),
        "mined_rows": len(run.rows),
        # query i's positive is document i: how often BM25 ranks it first (sanity, not a target)
        "positive_first": float(np.mean(lists.positions[:, 0] == np.arange(len(lists.query_ids)))),
    }


def dense(kind: IndexKind) -> Callable[[int, dict[str, Path]], dict[str, object]]:
    def stage(size: int, where: dict[str, Path]) -> dict[str, object]:
        config = DENSE[kind]
        started = time.perf_counter()
        vectors = np.load(where["embeddings"], mmap_mode="r")  # (size, dim)
        queries = np.load(where["queries"])  # (n_queries, dim)
        ids = [f"d{i}" for i in range(size)]
        index = DenseIndex.build(vectors, ids, config)
        built = time.perf_counter()
        results = index.search(queries, [f"q{i}" for i in range(len(queries))], DEPTH)
        searched = time.perf_counter()
        disk = folder_bytes(where["embeddings"])
        if kind != "flat":  # the project saves IVF/HNSW indexes; a flat one is rebuilt
            folder = where["faiss"] / kind
            index.save(folder, {"size": size})
            disk += folder_bytes(folder)
        where["found"].mkdir(exist_ok=True)
        np.save(where["found"] / f"{kind}.npy", results.positions.astype(np.int32))
        return {
            "wall_s": searched - started,
            "disk_bytes": disk,
            "build_s": built - started,
            "search_s": searched - built,
            "config": {k: v for k, v in vars(config).items() if k != "use_gpu"},
        }

    return stage


STAGES: dict[str, Callable[[int, dict[str, Path]], dict[str, object]]] = {
    "bm25_index": bm25_index,
    "bm25_mining": bm25_mining,
    "dense_flat": dense("flat"),
    "dense_ivf": dense("ivf"),
    "dense_hnsw": dense("hnsw"),
}


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (VmHWM: the peak resident set; RssAnon/RssFile)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return -1


def main(argv: list[str]) -> None:
    stage, size, work = argv[0], int(argv[1]), Path(argv[2])
    result = STAGES[stage](size, paths(work, size))
    result["vm_hwm_kib"] = status_kib("VmHWM")
    result["end_rss_anon_kib"] = status_kib("RssAnon")  # at the end: heap vs mapped file pages
    result["end_rss_file_kib"] = status_kib("RssFile")
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
