"""Synthetic corpora for bench/scale.py, made of SciFact's real text, and generated embeddings.

1. Documents: a real SciFact title and as many real SciFact sentences as a real SciFact abstract
   has (drawn at random), sentences drawn uniformly from all abstracts. Term and length
   statistics stay SciFact's; only the corpus grows. Every size is a prefix of the largest.
2. Queries: a span of 6-14 words of one sentence of a document among the first ``n_queries``
   (its positive, so every size has the same queries and qrels).
3. Embeddings (to time search apart from encoding): unit vectors around 4,096 random centres
   plus noise whose spectrum decays like 1/k over the 384 axes (clustered and of low intrinsic
   dimension, as real sentence embeddings are: isotropic noise would make every neighbour
   equally far, which no real model produces); each query is its positive's vector plus less
   of the same noise. Generated in chunks seeded by chunk number, so every size's matrix is a
   prefix of the largest's.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap

SCIFACT = Path("/work/shared/data/beir/scifact")
DIM = 384
_CENTRES = 4096
_CHUNK = 65536
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _scifact_parts(source: Path) -> tuple[list[str], list[str], list[int]]:
    """(titles, sentences, sentences per abstract) of the real corpus."""
    titles: list[str] = []
    sentences: list[str] = []
    counts: list[int] = []
    with gzip.open(source / "corpus.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            doc = json.loads(line)
            parts = [s for s in _SENTENCE_END.split(doc["text"]) if s.strip()]
            titles.append(doc["title"])
            sentences += parts
            counts.append(max(1, len(parts)))
    return titles, sentences, counts


def write_corpora(folders: dict[int, Path], n_queries: int, seed: int = 0) -> None:
    """Write ``folders[size]/corpus.jsonl`` for every size, plus the shared queries and qrels."""
    titles, sentences, counts = _scifact_parts(SCIFACT)
    rng = np.random.default_rng(seed)
    largest = max(folders)
    handles = {
        size: (folder / "corpus.jsonl").open("w", encoding="utf-8")
        for size, folder in folders.items()
    }
    positive_texts: list[str] = []
    try:
        for start in range(0, largest, _CHUNK):
            stop = min(start + _CHUNK, largest)
            n = stop - start
            lengths = np.asarray(counts)[rng.integers(0, len(counts), n)]
            picks = rng.integers(0, len(sentences), int(lengths.sum()))
            title_of = rng.integers(0, len(titles), n)
            ends = np.cumsum(lengths).tolist()
            begin = 0
            for offset, end in enumerate(ends):
                text = " ".join(sentences[i] for i in picks[begin:end].tolist())
                begin = end
                row = start + offset
                if row < n_queries:
                    positive_texts.append(text)
                line = json.dumps(
                    {"_id": f"d{row}", "title": titles[title_of[offset]], "text": text}
                )
                for size, handle in handles.items():
                    if row < size:
                        handle.write(line + "\n")
    finally:
        for handle in handles.values():
            handle.close()
    queries = []
    for row, text in enumerate(positive_texts):
        words = text.split()
        width = int(rng.integers(6, 15))
        first = int(rng.integers(0, max(1, len(words) - width)))
        queries.append({"_id": f"q{row}", "text": " ".join(words[first : first + width])})
    for folder in folders.values():
        with (folder / "queries.jsonl").open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(q) + "\n" for q in queries)
        (folder / "qrels").mkdir(exist_ok=True)
        lines = ["query-id\tcorpus-id\tscore"] + [f"q{i}\td{i}\t1" for i in range(len(queries))]
        (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")


_SPECTRUM = 1.0 / np.arange(1, DIM + 1)
_SPECTRUM /= np.linalg.norm(_SPECTRUM)  # noise of expected norm 1 with these per-axis scales
_DOC_NOISE, _QUERY_NOISE = 0.6, 0.3


def _unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def write_embeddings(path: Path, rows: int, seed: int = 0) -> None:
    """(rows, DIM) clustered unit vectors as a .npy, chunk by chunk (prefix-stable)."""
    centres = _unit(np.random.default_rng(seed).standard_normal((_CENTRES, DIM)))
    out = open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, DIM))
    for number, start in enumerate(range(0, rows, _CHUNK)):
        stop = min(start + _CHUNK, rows)
        rng = np.random.default_rng([seed, number])
        noise = _DOC_NOISE * rng.standard_normal((stop - start, DIM)) * _SPECTRUM
        out[start:stop] = _unit(centres[rng.integers(0, _CENTRES, stop - start)] + noise)
    out.flush()
    del out


def write_query_embeddings(path: Path, corpus: Path, n_queries: int, seed: int = 0) -> None:
    """Query ``i``: document ``i``'s vector plus noise, unit length."""
    docs = np.load(corpus, mmap_mode="r")[:n_queries]
    rng = np.random.default_rng([seed, 1 << 20])
    noise = _QUERY_NOISE * rng.standard_normal(docs.shape) * _SPECTRUM
    np.save(path, _unit(np.asarray(docs) + noise))
