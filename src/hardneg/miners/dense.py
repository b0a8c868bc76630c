"""Dense-mined negatives: each query's FAISS top-N under a bi-encoder (the negatives STAR uses).

Corpus embeddings come from core's ``EmbeddingStore`` (encoded once per corpus and model);
scores are the model's own (cosine for unit-normalised models). The positives' scores are
computed directly from their embeddings, whether or not they are in the top-N (Zhan et al.,
"Optimizing Dense Retrieval Model Training with Hard Negatives", SIGIR 2021, for STAR).

Under ``torchrun`` (a ``torch.distributed`` process group) the same calls shard the work
(``core.sharded``): each rank encodes its share of the corpus into the store, rank 0 assembles
it; each rank encodes and searches its share of the queries; every rank ends with the same
candidate lists, in query order, identical to a single process's.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import TYPE_CHECKING

import faiss
import numpy as np
import numpy.typing as npt

from hardneg.core.beir import BeirSplit
from hardneg.core.cache import Cache
from hardneg.core.dense import DenseIndex
from hardneg.core.embeddings import EmbeddingKey
from hardneg.core.encoders import DEFAULT_MODEL, encode_texts, load_encoder, uses_cosine
from hardneg.core.index_params import DenseSearch
from hardneg.core.progress import Progress, no_progress
from hardneg.core.sharded import EncodeOptions, Shards, encode_corpus_sharded, shared_cache
from hardneg.core.workspace import Workspace
from hardneg.miners.candidates import (
    CandidateLists,
    bucket_depth,
    cached_candidates,
    positive_ids_of,
    retrieval_depth,
    retrieval_key,
)
from hardneg.miners.job import MinedRun, MiningJob
from hardneg.miners.selection import select_retrieved

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

METHOD = "dense"
# Texts per EmbeddingStore chunk: sentence-transformers sorts each encode call by length, so a
# large chunk means less padding (one chunk holds all of a BEIR corpus of this size).
ENCODE_CHUNK = 32768
ENCODING_QUERIES = "dense: encoding queries"


def dense_key(split: BeirSplit, embedding: EmbeddingKey, search: DenseSearch, depth: int) -> str:
    index = search.index.model_dump()
    index.pop("use_gpu")  # where the search runs does not change its results
    return retrieval_key(
        METHOD,
        split,
        depth,
        {
            "embedding": asdict(embedding),  # corpus + model fingerprints, length, prompt
            "query_prompt": search.query_prompt,
            "index": index,
            "faiss": faiss.__version__,
        },
    )


def positive_scores(
    query_vectors: npt.NDArray[np.float32],
    corpus_vectors: npt.NDArray[np.float32],
    split: BeirSplit,
    positive_ids: tuple[tuple[str, ...], ...],
) -> tuple[tuple[float, ...], ...]:
    """Inner product of each query with each of its positives (cosine for unit vectors)."""
    scores: list[tuple[float, ...]] = []
    for row, positives in enumerate(positive_ids):
        rows = [split.corpus.position(d) for d in positives]
        docs = np.asarray(corpus_vectors[rows], np.float32)  # (n_positives, dim)
        scores.append(tuple(float(s) for s in docs @ query_vectors[row]))  # (n_positives,)
    return tuple(scores)


def search_candidates(
    split: BeirSplit,
    model: SentenceTransformer,
    workspace: Workspace,
    depth: int,
    search: DenseSearch,
    progress: Progress = no_progress,
) -> CandidateLists:
    shards = Shards.current()
    options = EncodeOptions(search.corpus_prompt, search.batch_size, ENCODE_CHUNK, progress)
    corpus_vectors = encode_corpus_sharded(
        workspace.embeddings, model, split.corpus, options, shards
    )  # (n_docs, dim), memory-mapped
    embedding = EmbeddingKey.for_model(split.corpus, model, search.corpus_prompt)

    def index_of() -> DenseIndex:
        ids, stem = split.corpus.ids, embedding.stem
        return workspace.dense_index(corpus_vectors, ids, stem, search.index)

    # rank 0 builds (and saves, for IVF/HNSW) the index first; the others then load the same one
    index = index_of() if shards.is_main else None
    shards.barrier()
    index = index or index_of()
    start, stop = shards.bounds(len(split.queries))
    query_ids = list(split.queries)[start:stop]  # this rank's share (all of them in one process)
    progress(0, len(query_ids), ENCODING_QUERIES)
    texts = [split.queries[q] for q in query_ids]
    query_vectors = encode_texts(
        model, texts, search.batch_size, search.query_prompt or None, progress, ENCODING_QUERIES
    )  # (n_queries, dim)
    progress(len(query_ids), len(query_ids), ENCODING_QUERIES)
    results = index.search(query_vectors, query_ids, depth, progress=progress)
    positive_ids = tuple(positive_ids_of(split, q) for q in query_ids)
    scores = positive_scores(query_vectors, corpus_vectors, split, positive_ids)
    return CandidateLists(
        query_ids=tuple(q for share in shards.gather_objects(query_ids) for q in share),
        positions=shards.gather_rows(results.positions.astype(np.int32)),
        scores=shards.gather_rows(results.scores.astype(np.float32)),
        positive_ids=tuple(p for share in shards.gather_objects(positive_ids) for p in share),
        positive_scores=tuple(s for share in shards.gather_objects(scores) for s in share),
    )


def dense_candidates(
    split: BeirSplit,
    model: SentenceTransformer,
    workspace: Workspace,
    depth: int,
    search: DenseSearch | None = None,
    cache: Cache | None = None,
    progress: Progress = no_progress,
) -> tuple[CandidateLists, bool]:
    """Cached dense candidate lists: a hit encodes and searches nothing."""
    search = search or DenseSearch()
    depth = bucket_depth(depth)
    embedding = EmbeddingKey.for_model(split.corpus, model, search.corpus_prompt)
    key = dense_key(split, embedding, search, depth)

    def compute() -> CandidateLists:
        return search_candidates(split, model, workspace, depth, search, progress)

    return cached_candidates(shared_cache(cache, Shards.current()), key, compute)


def load_job_encoder(job: MiningJob) -> SentenceTransformer:
    exports = job.workspace.encoder_exports
    return load_encoder(
        job.spec.model, job.device, job.spec.max_length, job.encoder_backend, exports
    )


def mine_dense(job: MiningJob, progress: Progress = no_progress) -> MinedRun:
    model = load_job_encoder(job)
    depth = retrieval_depth(job.split, job.spec.filters)
    search, cache = job.spec.dense_search, job.cache
    lists, hit = dense_candidates(job.split, model, job.workspace, depth, search, cache, progress)
    embedding = EmbeddingKey.for_model(job.split.corpus, model, job.spec.corpus_prompt)
    provenance = {
        "scorer": "cosine" if uses_cosine(model) else "dot",
        "model": job.spec.model or DEFAULT_MODEL,
        "model_fingerprint": embedding.model_fingerprint,
        "backend": embedding.backend,
        "max_length": int(model.max_seq_length or 0),
        "index": job.spec.index.model_dump(),
        "query_prompt": job.spec.query_prompt,
        "corpus_prompt": job.spec.corpus_prompt,
    }
    return select_retrieved(job, METHOD, lists, hit, provenance, progress)
