"""FAISS inner-product indexes over corpus embeddings.

Flat (exact) by default; IVF or HNSW for large corpora. When FAISS sees GPUs the index is
copied to all of them (sharded), otherwise it stays on the CPU. Queries are searched in chunks
so memory stays bounded whatever the number of queries.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import faiss
import numpy as np
import numpy.typing as npt

from hardneg.core.atomic import atomic_path
from hardneg.core.index_params import DenseIndexConfig
from hardneg.core.progress import Progress, no_progress
from hardneg.core.results import SearchResults

logger = logging.getLogger(__name__)

_INDEX_FILE = "index.faiss"
_META_FILE = "index.json"


def gpu_count() -> int:
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def _build_cpu_index(vectors: npt.NDArray[np.float32], config: DenseIndexConfig) -> faiss.Index:
    dim = vectors.shape[1]
    index: faiss.Index
    if config.kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif config.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    else:
        nlist = max(1, min(config.nlist, vectors.shape[0] // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(np.ascontiguousarray(vectors))
    index.add(np.ascontiguousarray(vectors))
    return index


def _tune(index: faiss.Index, config: DenseIndexConfig) -> None:
    if config.kind == "ivf":
        faiss.extract_index_ivf(index).nprobe = config.nprobe
    elif config.kind == "hnsw":
        hnsw = cast(faiss.IndexHNSW, faiss.downcast_index(index))
        hnsw.hnsw.efSearch = config.ef_search


def _to_gpus(index: faiss.Index) -> faiss.Index:
    options = faiss.GpuMultipleClonerOptions()
    options.shard = True
    options.useFloat16 = False
    return faiss.index_cpu_to_all_gpus(index, co=options)


class DenseIndex:
    """An inner-product index whose row ``i`` is ``corpus_ids[i]``."""

    def __init__(
        self, index: faiss.Index, corpus_ids: Sequence[str], config: DenseIndexConfig
    ) -> None:
        if index.ntotal != len(corpus_ids):
            raise ValueError(f"index holds {index.ntotal} vectors for {len(corpus_ids)} ids")
        self.config = config
        self.corpus_ids = corpus_ids
        self._cpu_index = index
        _tune(index, config)
        use_gpu = config.use_gpu if config.use_gpu is not None else gpu_count() > 0
        self.on_gpu = use_gpu and gpu_count() > 0 and config.kind != "hnsw"
        self._index = _to_gpus(index) if self.on_gpu else index

    @classmethod
    def build(
        cls,
        vectors: npt.NDArray[np.float32],
        corpus_ids: Sequence[str],
        config: DenseIndexConfig | None = None,
    ) -> DenseIndex:
        config = config or DenseIndexConfig()
        vectors = np.asarray(vectors, dtype=np.float32)  # (n_docs, dim)
        return cls(_build_cpu_index(vectors, config), corpus_ids, config)

    def save(self, folder: Path, key: dict[str, object]) -> None:
        with atomic_path(folder) as temp:
            temp.mkdir()
            faiss.write_index(self._cpu_index, str(temp / _INDEX_FILE))
            meta = {
                "config": self.config.model_dump(),
                "key": key,
                "ntotal": self._cpu_index.ntotal,
            }
            (temp / _META_FILE).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load_or_build(
        cls,
        folder: Path,
        vectors: npt.NDArray[np.float32],
        corpus_ids: Sequence[str],
        key: dict[str, object],
        config: DenseIndexConfig | None = None,
    ) -> DenseIndex:
        """Reuse the index in ``folder`` when its key and config match; else build and save."""
        config = config or DenseIndexConfig()
        meta_path = folder / _META_FILE
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            saved = DenseIndexConfig(**meta["config"])
            if meta.get("key") == key and saved.structure() == config.structure():
                logger.info("reusing FAISS index at %s", folder)
                return cls(faiss.read_index(str(folder / _INDEX_FILE)), corpus_ids, config)
        index = cls.build(vectors, corpus_ids, config)
        if config.kind != "flat":  # a flat index is rebuilt from the mmap'd matrix in no time
            index.save(folder, key)
        return index

    def search(
        self,
        query_vectors: npt.NDArray[np.float32],
        query_ids: Sequence[str],
        k: int,
        chunk_size: int = 4096,
        progress: Progress = no_progress,
    ) -> SearchResults:
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        queries = np.asarray(query_vectors, dtype=np.float32)  # (n_queries, dim)
        depth = min(k, len(self.corpus_ids))
        positions = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.zeros((len(queries), k), dtype=np.float32)
        for start in range(0, len(queries), chunk_size):
            chunk = np.ascontiguousarray(queries[start : start + chunk_size])
            found_scores, found = self._index.search(chunk, depth)  # (chunk, depth) each
            positions[start : start + len(chunk), :depth] = found
            scores[start : start + len(chunk), :depth] = np.where(found >= 0, found_scores, 0.0)
            progress(min(start + chunk_size, len(queries)), len(queries), "dense: searching")
        return SearchResults(tuple(query_ids), positions, scores, self.corpus_ids)
