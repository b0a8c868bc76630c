"""Where artifacts live on disk: one root folder shared by the CLI, the API and the workers."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

from hardneg.core.bm25 import BM25Params
from hardneg.core.cache import cache_key
from hardneg.core.embeddings import EmbeddingStore

DEFAULT_HOME_ENV = "HARDNEG_HOME"


def default_home() -> Path:
    """``$HARDNEG_HOME``, else ``~/.cache/hardneg``."""
    configured = os.environ.get(DEFAULT_HOME_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "hardneg"


class Workspace:
    """Layout of the data directory::

    datasets/<name>/                      downloaded BEIR datasets
    embeddings/<corpus fp>/<key>.npy      corpus embeddings per model/length/prompt
    indexes/bm25/<corpus fp>-<params>/    saved BM25 indexes
    indexes/faiss/<embedding key>-<cfg>/  saved FAISS indexes (IVF/HNSW)
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or default_home()).expanduser()

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def embeddings(self) -> EmbeddingStore:
        return EmbeddingStore(self.root / "embeddings")

    def bm25_dir(self, corpus_fingerprint: str, params: BM25Params) -> Path:
        params_id = cache_key("bm25", asdict(params)).split(":")[1][:12]
        return self.root / "indexes" / "bm25" / f"{corpus_fingerprint}-{params_id}"

    def faiss_dir(self, embedding_stem: str, config: Mapping[str, object]) -> Path:
        config_id = cache_key("faiss", config).split(":")[1][:12]
        return self.root / "indexes" / "faiss" / f"{embedding_stem}-{config_id}"
