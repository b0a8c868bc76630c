"""Corpus encoding and query search sharded over a ``torch.distributed`` process group.

Under ``torchrun`` (gloo on CPUs, NCCL on GPUs; one node or several) every rank runs the same
code; a plain process is a world of one and everything here degrades to the local call.

1. Encoding: rank ``r`` of ``W`` encodes the contiguous rows ``[r * N // W, (r + 1) * N // W)``
   of the corpus into a part file beside the final matrix in the ``EmbeddingStore`` (each part
   written atomically), all ranks wait at a barrier, then rank 0 copies the parts in rank order
   into the store's ``.npy`` (written under a temp name and renamed into place, chunk by chunk:
   bounded memory) and deletes them. Every rank then memory-maps the same file. Ranks on several
   nodes need the store on a filesystem they all see.
2. Search: each rank searches its contiguous share of the queries; ``gather_rows`` /
   ``gather_objects`` put the shares back together in rank order, i.e. in query order.
3. ``MainRankCache``: the cache read by rank 0 and broadcast, written by rank 0 only, so every
   rank takes the same hit-or-miss branch (a rank computing alone would wait forever for the
   others at a collective).

This module imports torch lazily (only when a process group exists or is asked about).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
from numpy.lib.format import open_memmap

from hardneg.core.atomic import atomic_path
from hardneg.core.beir import Corpus
from hardneg.core.cache import Cache
from hardneg.core.embeddings import EmbeddingKey, EmbeddingStore
from hardneg.core.encoders import encode_texts
from hardneg.core.progress import Progress, no_progress

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

T = TypeVar("T")
A = TypeVar("A", bound=npt.NDArray[Any])
_COPY_ROWS = 65536  # rows copied at once when assembling the parts


@dataclass(frozen=True)
class Shards:
    """This process's place in the process group (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def current(cls) -> Shards:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def bounds(self, total: int) -> tuple[int, int]:
        """This rank's contiguous share ``[start, stop)`` of ``total`` rows (sizes differ <= 1)."""
        return total * self.rank // self.world_size, total * (self.rank + 1) // self.world_size

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def from_main(self, compute: Callable[[], T]) -> T:
        """``compute()`` run on rank 0 only, its (picklable) result handed to every rank."""
        if not self.distributed:
            return compute()
        import torch.distributed as dist

        box = [compute() if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]  # type: ignore[return-value]

    def gather_objects(self, value: T) -> list[T]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        out: list[T | None] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out  # type: ignore[return-value]

    def gather_rows(self, rows: A) -> A:
        """Every rank's rows (its share of a matrix), concatenated in rank order."""
        if not self.distributed:
            return rows
        return cast(A, np.concatenate(self.gather_objects(np.ascontiguousarray(rows)), axis=0))


class MainRankCache:
    """A ``Cache`` seen the same by every rank: read on rank 0 and broadcast, set by rank 0."""

    def __init__(self, cache: Cache, shards: Shards) -> None:
        self.cache = cache
        self.shards = shards

    def get(self, key: str) -> bytes | None:
        return self.shards.from_main(lambda: self.cache.get(key))

    def set(self, key: str, value: bytes) -> None:
        if self.shards.is_main:
            self.cache.set(key, value)


def shared_cache(cache: Cache | None, shards: Shards) -> Cache | None:
    """``cache`` wrapped for a process group (unchanged in a world of one)."""
    return MainRankCache(cache, shards) if cache is not None and shards.distributed else cache


def _dimension(model: SentenceTransformer) -> int:
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = get()
    if dim is None:
        raise ValueError("model does not report its embedding dimension")
    return int(dim)


def _encode_rows(
    model: SentenceTransformer,
    corpus: Corpus,
    rows: tuple[int, int],
    target: Path,
    options: EncodeOptions,
) -> None:
    """Corpus rows ``[start, stop)`` encoded into the .npy ``target``, written atomically."""
    start, stop = rows
    dim = _dimension(model)
    with atomic_path(target, suffix=".npy") as temp:
        out = open_memmap(temp, mode="w+", dtype=np.float32, shape=(stop - start, dim))
        for first in range(start, stop, options.chunk_size):
            last = min(first + options.chunk_size, stop)
            texts = corpus.full_texts(first, last)
            out[first - start : last - start] = encode_texts(
                model, texts, options.batch_size, options.prompt or None
            )
            options.progress(last - start, stop - start, "encoding corpus shard")
        out.flush()
        del out


def _assemble(parts: list[Path], target: Path, rows: int, dim: int) -> None:
    """Copy the parts, in order, into one .npy at ``target`` (renamed into place when whole)."""
    with atomic_path(target, suffix=".npy") as temp:
        out = open_memmap(temp, mode="w+", dtype=np.float32, shape=(rows, dim))
        at = 0
        for part in parts:
            block = np.load(part, mmap_mode="r")  # (part rows, dim)
            for first in range(0, len(block), _COPY_ROWS):
                piece = block[first : first + _COPY_ROWS]
                out[at : at + len(piece)] = piece
                at += len(piece)
        if at != rows:
            raise ValueError(f"the parts hold {at} rows, the corpus {rows}")
        out.flush()
        del out


@dataclass(frozen=True)
class EncodeOptions:
    prompt: str = ""
    batch_size: int = 64
    chunk_size: int = 4096
    progress: Progress = no_progress


def encode_corpus_sharded(
    store: EmbeddingStore,
    model: SentenceTransformer,
    corpus: Corpus,
    options: EncodeOptions | None = None,
    shards: Shards | None = None,
) -> npt.NDArray[np.float32]:
    """The corpus embeddings in ``store``, each rank encoding its share (steps 1 of the module
    docstring); the same memory-mapped matrix on every rank. Reused when already stored."""
    options = options or EncodeOptions()
    shards = shards or Shards.current()
    key = EmbeddingKey.for_model(corpus, model, options.prompt)
    if not shards.distributed:
        return store.encode_corpus(
            model, corpus, options.prompt, options.batch_size, options.chunk_size, options.progress
        )
    target = store.path(key)
    if shards.from_main(lambda: target.is_file()):
        logger.info("reusing corpus embeddings %s", target)
        return np.load(target, mmap_mode="r")
    run = shards.from_main(lambda: uuid.uuid4().hex[:12])  # names this run's part files
    parts = [
        target.parent / f".{target.stem}.{run}.part{r}of{shards.world_size}.npy"
        for r in range(shards.world_size)
    ]
    try:
        _encode_rows(model, corpus, shards.bounds(len(corpus)), parts[shards.rank], options)
        shards.barrier()  # every part is in place
        if shards.is_main:
            dim = _dimension(model)
            _assemble(parts, target, len(corpus), dim)
            meta = asdict(key) | {"rows": len(corpus), "dim": dim, "shards": shards.world_size}
            target.with_suffix(".json").write_text(json.dumps(meta, indent=2))
            logger.info("assembled %d shards into %s", shards.world_size, target)
        shards.barrier()  # the matrix is in place
    finally:
        if shards.is_main:
            for part in parts:
                part.unlink(missing_ok=True)
    return np.load(target, mmap_mode="r")
