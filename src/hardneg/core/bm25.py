"""BM25 over a corpus with bm25s (eager sparse scoring), saved to and loaded from disk.

Scoring is Lucene's BM25 variant (Robertson et al., "Okapi at TREC-3", 1994; Lucene's idf as
analysed by Kamphuis et al., "Which BM25 Do You Mean?", ECIR 2020)::

    idf(t)     = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
    score(q,d) = sum_{t in q} idf(t) * tf(t,d) / (tf(t,d) + k1 * (1 - b + b * |d| / avgdl))

bm25s (Lù, "BM25S: Orders of magnitude faster lexical search via eager sparse scoring", 2024)
precomputes every (term, doc) score into a sparse matrix, so a query is a sum of rows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import bm25s
import numpy as np
import Stemmer

from hardneg.core.atomic import atomic_path
from hardneg.core.beir import Corpus
from hardneg.core.progress import Progress, no_progress
from hardneg.core.results import SearchResults

logger = logging.getLogger(__name__)

_PARAMS_FILE = "hardneg-bm25.json"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class BM25Params:
    """Defaults are bm25s's (Lucene scoring, k1=1.5, b=0.75, Snowball stemming, stopwords)."""

    k1: float = 1.5
    b: float = 0.75
    method: str = "lucene"
    stemmer: str | None = "english"
    stopwords: str | None = "en"

    def __post_init__(self) -> None:
        if self.k1 < 0 or not 0 <= self.b <= 1:
            raise ValueError(f"need k1 >= 0 and 0 <= b <= 1, got k1={self.k1}, b={self.b}")
        if self.method not in ("robertson", "lucene", "atire", "bm25l", "bm25+"):
            raise ValueError(f"unknown BM25 method {self.method!r}")


class BM25Tokenizer:
    """Lower-case word tokens, English stopwords removed, Snowball-stemmed."""

    def __init__(self, params: BM25Params) -> None:
        self._stemmer = Stemmer.Stemmer(params.stemmer) if params.stemmer else None
        self._stopwords: str | list[str] = params.stopwords or []

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        tokens = bm25s.tokenize(
            list(texts),
            stopwords=self._stopwords,
            stemmer=self._stemmer,
            return_ids=False,
            show_progress=False,
        )
        return [list(t) for t in tokens]


class BM25Index:
    """A BM25 index of one corpus with one set of parameters."""

    def __init__(
        self, retriever: bm25s.BM25, params: BM25Params, corpus_ids: Sequence[str]
    ) -> None:
        self._retriever = retriever
        self.params = params
        self.corpus_ids = corpus_ids
        self.tokenize = BM25Tokenizer(params)

    @classmethod
    def build(
        cls, corpus: Corpus, params: BM25Params | None = None, progress: Progress = no_progress
    ) -> BM25Index:
        params = params or BM25Params()
        progress(0, len(corpus), "bm25: tokenizing")
        tokens = BM25Tokenizer(params)(corpus.full_texts())
        progress(len(corpus) // 2, len(corpus), "bm25: indexing")
        retriever = bm25s.BM25(k1=params.k1, b=params.b, method=params.method)
        retriever.index(tokens, show_progress=False)
        progress(len(corpus), len(corpus), "bm25: indexed")
        return cls(retriever, params, corpus.ids)

    def save(self, folder: Path, corpus_fingerprint: str) -> None:
        """Write the index to ``folder`` atomically."""
        with atomic_path(folder) as temp:
            temp.mkdir()
            self._retriever.save(str(temp), show_progress=False)
            meta = {
                "format": _FORMAT_VERSION,
                "params": asdict(self.params),
                "corpus_fingerprint": corpus_fingerprint,
                "num_docs": len(self.corpus_ids),
            }
            (temp / _PARAMS_FILE).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: Path, corpus: Corpus) -> BM25Index:
        meta = json.loads((folder / _PARAMS_FILE).read_text())
        if meta.get("corpus_fingerprint") != corpus.fingerprint:
            raise ValueError(f"{folder} indexes another corpus than the one given")
        retriever = bm25s.BM25.load(str(folder), show_progress=False, mmap=True)
        return cls(retriever, BM25Params(**meta["params"]), corpus.ids)

    @classmethod
    def load_or_build(
        cls,
        folder: Path,
        corpus: Corpus,
        params: BM25Params | None = None,
        progress: Progress = no_progress,
    ) -> BM25Index:
        """Reuse the index saved in ``folder`` if it matches; else build and save one."""
        params = params or BM25Params()
        meta_file = folder / _PARAMS_FILE
        if meta_file.is_file():
            meta = json.loads(meta_file.read_text())
            if (
                meta.get("format") == _FORMAT_VERSION
                and meta.get("corpus_fingerprint") == corpus.fingerprint
                and BM25Params(**meta["params"]) == params
            ):
                logger.info("reusing BM25 index at %s", folder)
                return cls.load(folder, corpus)
        index = cls.build(corpus, params, progress)
        index.save(folder, corpus.fingerprint)
        return index

    def score_documents(self, tokens: Sequence[str], positions: Sequence[int]) -> list[float]:
        """BM25 score of one tokenized query against the given corpus rows only.

        ``score(q, d) = sum_{t in q} S[t, d]`` read from bm25s's eager (term x doc) score matrix
        (plus the non-occurrence term of BM25L/BM25+): the same sum a search computes for every
        document, for the few asked for (e.g. positives outside the top-k).
        """
        scores = self._retriever.scores
        vocab: dict[str, int] = self._retriever.vocab_dict
        data, indices, indptr = (np.asarray(scores[n]) for n in ("data", "indices", "indptr"))
        token_ids = np.asarray([vocab[t] for t in tokens if t in vocab], dtype=np.int64)
        docs = np.asarray(positions, dtype=np.int64)  # (n,)
        totals = np.zeros(len(docs), dtype=np.float64)  # (n,)
        for token_id in token_ids:
            start, stop = int(indptr[token_id]), int(indptr[token_id + 1])
            column = indices[start:stop]  # rows holding the term, ascending
            where = np.searchsorted(column, docs)  # (n,)
            found = (where < len(column)) & (column[np.minimum(where, len(column) - 1)] == docs)
            totals[found] += data[start + where[found]]
        nonoccurrence = getattr(self._retriever, "nonoccurrence_array", None)
        if nonoccurrence is not None and len(token_ids):
            totals += float(np.asarray(nonoccurrence)[token_ids].sum())
        return [float(np.float32(t)) for t in totals]

    def search(
        self,
        queries: Sequence[str],
        query_ids: Sequence[str],
        k: int,
        progress: Progress = no_progress,
    ) -> SearchResults:
        return self.search_tokens(self.tokenize(queries), query_ids, k, progress)

    def search_tokens(
        self,
        query_tokens: Sequence[Sequence[str]],
        query_ids: Sequence[str],
        k: int,
        progress: Progress = no_progress,
        chunk_size: int = 2048,
    ) -> SearchResults:
        """Top-k per tokenized query. Documents that match no query term are left out (-1)."""
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        n_docs = len(self.corpus_ids)
        depth = min(k, n_docs)
        positions = np.full((len(query_tokens), k), -1, dtype=np.int64)
        scores = np.zeros((len(query_tokens), k), dtype=np.float32)
        for start in range(0, len(query_tokens), chunk_size):
            chunk = [list(t) for t in query_tokens[start : start + chunk_size]]
            found, found_scores = self._retriever.retrieve(
                chunk, k=depth, show_progress=False, n_threads=0
            )
            matched = found_scores > 0
            rows = slice(start, start + len(chunk))
            positions[rows, :depth] = np.where(matched, found, -1)
            scores[rows, :depth] = np.where(matched, found_scores, 0.0)
            progress(
                min(start + chunk_size, len(query_tokens)), len(query_tokens), "bm25: searching"
            )
        return SearchResults(tuple(query_ids), positions, scores, self.corpus_ids)
