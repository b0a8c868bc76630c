"""Corpus embeddings, encoded once per (corpus, model, backend, max length, prompt) and reused.

Each matrix is a float32 ``.npy`` file, written in chunks to a temp file (bounded memory, no
half-written file on a crash or cancel) and memory-mapped on load.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from numpy.lib.format import open_memmap

from hardneg.core.atomic import atomic_path
from hardneg.core.backends import model_backend
from hardneg.core.beir import Corpus
from hardneg.core.encoders import encode_texts, model_fingerprint, uses_cosine
from hardneg.core.progress import Progress, no_progress

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddingKey:
    """Everything that determines a corpus embedding matrix."""

    corpus_fingerprint: str
    model_fingerprint: str
    max_length: int
    prompt: str
    normalized: bool
    backend: str = "torch"  # also in model_fingerprint: int8 and fp32 vectors never share a file

    @property
    def stem(self) -> str:
        detail = hashlib.sha256(f"{self.max_length}|{self.prompt}|{self.normalized}".encode())
        return f"{self.model_fingerprint[:16]}-{detail.hexdigest()[:12]}"

    @classmethod
    def for_model(
        cls, corpus: Corpus, model: SentenceTransformer, prompt: str = ""
    ) -> EmbeddingKey:
        return cls(
            corpus_fingerprint=corpus.fingerprint,
            model_fingerprint=model_fingerprint(model),
            max_length=int(model.max_seq_length or 0),
            prompt=prompt,
            normalized=uses_cosine(model),
            backend=model_backend(model),
        )


def _shifted(progress: Progress, offset: int, rows: int) -> Progress:
    """``progress`` for one chunk of ``rows``: its ``done`` counts from the chunk's first row."""

    def report(done: int, total: int, stage: str) -> None:
        progress(offset + done, rows, stage)

    return report


class EmbeddingStore:
    """A folder of cached embedding matrices: ``<root>/<corpus fp>/<key stem>.npy``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: EmbeddingKey) -> Path:
        return self.root / key.corpus_fingerprint / f"{key.stem}.npy"

    def load(self, key: EmbeddingKey) -> npt.NDArray[np.float32] | None:
        path = self.path(key)
        if not path.is_file():
            return None
        return np.load(path, mmap_mode="r")

    def encode_corpus(
        self,
        model: SentenceTransformer,
        corpus: Corpus,
        prompt: str = "",
        batch_size: int = 64,
        chunk_size: int = 4096,
        progress: Progress = no_progress,
    ) -> npt.NDArray[np.float32]:
        """The corpus embeddings for ``model``: loaded if stored, else encoded and stored."""
        key = EmbeddingKey.for_model(corpus, model, prompt)
        cached = self.load(key)
        if cached is not None:
            logger.info("reusing corpus embeddings %s", self.path(key))
            return cached
        get_dim = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        dim = get_dim()
        if dim is None:
            raise ValueError("model does not report its embedding dimension")
        target = self.path(key)
        total = len(corpus)
        progress(0, total, "encoding corpus")
        with atomic_path(target, suffix=".npy") as temp:
            out = open_memmap(temp, mode="w+", dtype=np.float32, shape=(total, dim))
            for start in range(0, total, chunk_size):
                stop = min(start + chunk_size, total)
                texts = corpus.full_texts(start, stop)
                per_batch = _shifted(progress, start, total)
                out[start:stop] = encode_texts(
                    model, texts, batch_size, prompt or None, per_batch, "encoding corpus"
                )
                progress(stop, total, "encoding corpus")
            out.flush()
            del out
        meta = asdict(key) | {"rows": total, "dim": dim}
        target.with_suffix(".json").write_text(json.dumps(meta, indent=2))
        return np.load(target, mmap_mode="r")
