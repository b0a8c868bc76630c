"""Where artifacts live on disk: one root folder shared by the CLI, the API and the workers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hardneg.core.beir import Corpus
from hardneg.core.bm25 import BM25Index, BM25Params
from hardneg.core.cache import cache_key
from hardneg.core.dense import DenseIndex, DenseIndexConfig
from hardneg.core.embeddings import EmbeddingStore
from hardneg.core.progress import Progress, no_progress

DEFAULT_HOME_ENV = "HARDNEG_HOME"


def default_home() -> Path:
    """``$HARDNEG_HOME``, else ``~/.cache/hardneg``."""
    configured = os.environ.get(DEFAULT_HOME_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "hardneg"


class Workspace:
    """Layout of the data directory::

    datasets/<name>/                      downloaded BEIR datasets
    embeddings/<corpus fp>/<key>.npy      corpus embeddings per model/backend/length/prompt
    encoders/<model fp>-<artifact>-v<n>/  encoders exported to ONNX (fp32, int8), see core.backends
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

    @property
    def encoder_exports(self) -> Path:
        return self.root / "encoders"

    @property
    def llm_exports(self) -> Path:
        """Converted LLM weights (an F16 copy of a GGUF model)."""
        return self.root / "llm"

    def bm25_dir(self, corpus_fingerprint: str, params: BM25Params) -> Path:
        params_id = cache_key("bm25", params.model_dump()).split(":")[1][:12]
        return self.root / "indexes" / "bm25" / f"{corpus_fingerprint}-{params_id}"

    def bm25_index(
        self, corpus: Corpus, params: BM25Params | None = None, progress: Progress = no_progress
    ) -> BM25Index:
        """The BM25 index of ``corpus`` under ``params``: loaded when saved, else built and saved
        (every BM25 user reads one folder per corpus and parameters)."""
        params = params or BM25Params()
        folder = self.bm25_dir(corpus.fingerprint, params)
        return BM25Index.load_or_build(folder, corpus, params, progress)

    def faiss_dir(self, embedding_stem: str, config: DenseIndexConfig) -> Path:
        config_id = cache_key("faiss", config.structure()).split(":")[1][:12]
        return self.root / "indexes" / "faiss" / f"{embedding_stem}-{config_id}"

    def dense_index(
        self,
        vectors: npt.NDArray[np.float32],
        corpus_ids: Sequence[str],
        embedding_stem: str,
        config: DenseIndexConfig,
    ) -> DenseIndex:
        """The FAISS index over one stored embedding matrix (``vectors``, rows = ``corpus_ids``):
        loaded when saved, else built; IVF/HNSW are saved, a flat index is rebuilt in no time."""
        folder = self.faiss_dir(embedding_stem, config)
        key: dict[str, object] = {"stem": embedding_stem}
        return DenseIndex.load_or_build(folder, vectors, corpus_ids, key, config)
