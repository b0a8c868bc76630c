"""BM25 over a corpus: an eager (term x document) score matrix built and searched with numpy.

Scoring follows Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25 and Beyond"
(2009), in the variants of Kamphuis et al., "Which BM25 Do You Mean?" (ECIR 2020); Lucene's by
default. As in bm25s (Lù, "BM25S", 2024), every (term, document) score is computed once when
indexing, here with vectorised numpy; a batch of queries is scored as one sparse x dense
product into a (queries x documents) float32 block, then a row-wise partial sort gives the
top-k. Scores are float32 sums in query-term order, bit-identical to bm25s's (tested).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import numpy.typing as npt
import Stemmer

from hardneg.core.atomic import atomic_path
from hardneg.core.beir import Corpus
from hardneg.core.progress import Progress, no_progress
from hardneg.core.results import SearchResults

logger = logging.getLogger(__name__)

_PARAMS_FILE = "hardneg-bm25.json"
_VOCAB_FILE = "vocab.json"
_ARRAYS = ("data", "docs", "indptr")
# 2: our own numpy index (1 was a bm25s folder); indexes of another format are rebuilt
FORMAT_VERSION = 2
DELTA = 0.5  # BM25L / BM25+ lower bound of the term-frequency part (Lv & Zhai, 2011)
_BLOCK_CELLS = 1 << 22  # query x document cells scored at once (16 MiB of float32)

Real = Any  # a float or a float64 array: the formulas below serve both
Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float32]


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
        if self.method not in _VARIANTS:
            raise ValueError(f"unknown BM25 method {self.method!r}")


# The formulas. A (term, document) score is idf(df, N) (in double precision, kept as float32)
# times the tf part (float64 arrays of term frequencies and document lengths, or floats).


def lucene_idf(df: float, n: float) -> float:
    """Lucene's ``ln(1 + (N - df + 0.5) / (df + 0.5))``: the Robertson-Sparck Jones weight of
    Robertson & Zaragoza (2009) shifted so that it is never negative. Lucene's BM25 (its
    ``BM25Similarity``, and our default) is ``lucene_idf * robertson_tf``."""
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def robertson_tf(tf: Real, length: Real, avg_length: float, k1: float, b: float) -> Real:
    """BM25's saturating, length-normalised term frequency (Robertson & Zaragoza 2009), without
    the constant factor ``k1 + 1`` (Lucene drops it; rankings are unchanged)::

        tf / (tf + k1 * (1 - b + b * |d| / avgdl))
    """
    return tf / (k1 * ((1 - b) + b * length / avg_length) + tf)


def atire_tf(tf: Real, length: Real, avg_length: float, k1: float, b: float) -> Real:
    """ATIRE (Trotman et al., 2014) keeps the factor: ``(k1 + 1) * robertson_tf``."""
    return _scaled_tf(tf, k1) / (tf + k1 * (1 - b + b * length / avg_length))


def bm25l_tf(tf: Real, length: Real, avg_length: float, k1: float, b: float) -> Real:
    """BM25L (Lv & Zhai, SIGIR 2011): the length-normalised tf ``c`` shifted by ``DELTA``."""
    c = tf / (1 - b + b * length / avg_length)
    return ((k1 + 1) * (c + DELTA)) / (k1 + c + DELTA)


def bm25plus_tf(tf: Real, length: Real, avg_length: float, k1: float, b: float) -> Real:
    """BM25+ (Lv & Zhai, CIKM 2011): ``DELTA`` added to the saturated tf."""
    return _scaled_tf(tf, k1) / (k1 * (1 - b + b * length / avg_length) + tf) + DELTA


def _scaled_tf(tf: Real, k1: float) -> Real:
    """``(k1 + 1) * tf`` rounded to float32 as bm25s computes it (bit-identical scores)."""
    return np.float32(k1 + 1) * np.asarray(tf, dtype=np.float32)


# method -> (idf, tf part, whether a document lacking a query term still scores idf * tf(0))
_VARIANTS: dict[str, tuple[Callable[[float, float], float], Callable[..., Real], bool]] = {
    "lucene": (lucene_idf, robertson_tf, False),
    # the original idf, floored at 0 for terms in over half the documents
    "robertson": (
        lambda df, n: math.log(max((n - df + 0.5) / (df + 0.5), 1.0)),
        robertson_tf,
        False,
    ),
    "atire": (lambda df, n: math.log(n / df), atire_tf, False),
    "bm25l": (lambda df, n: math.log((n + 1) / (df + 0.5)), bm25l_tf, True),
    "bm25+": (lambda df, n: math.log((n + 1) / df), bm25plus_tf, True),
}


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


@dataclass(frozen=True)
class TermScores:
    """The eager score matrix in CSR form, one row per vocabulary term.

    Row ``t`` holds ``S[t, d]`` for the documents ``d`` containing ``t`` (ascending):
    ``data[indptr[t]:indptr[t + 1]]`` at ``docs[indptr[t]:indptr[t + 1]]``. For BM25L/BM25+
    ``S`` is stored minus ``nonoccurrence[t]``, which every document gets for a query term.
    """

    data: Floats  # (nnz,)
    docs: npt.NDArray[np.int32]  # (nnz,)
    indptr: Ints  # (n_terms + 1,)
    nonoccurrence: Floats | None  # (n_terms,)
    num_docs: int

    @classmethod
    def build(cls, term_ids: Ints, lengths: Ints, n_terms: int, params: BM25Params) -> TermScores:
        """From every token's term id (documents one after another) and each document's length."""
        idf_fn, tf_fn, nonoccurs = _VARIANTS[params.method]
        n_docs = len(lengths)
        doc_of = np.repeat(np.arange(n_docs, dtype=np.int32), lengths)  # (n_tokens,)
        order = _stable_order(term_ids, n_terms)  # by term, documents ascending within a term
        terms, docs = term_ids[order], doc_of[order]
        first = np.ones(len(order), dtype=bool)  # first token of each (term, doc) run
        first[1:] = (terms[1:] != terms[:-1]) | (docs[1:] != docs[:-1])
        starts = np.flatnonzero(first)
        tf = np.diff(np.append(starts, len(order))).astype(np.float64)
        terms, docs = terms[starts], docs[starts]
        df = np.bincount(terms, minlength=n_terms)
        indptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(df, out=indptr[1:])
        avg_length = float(lengths.mean()) if n_docs else 0.0
        # idf (and the non-occurrence score) per distinct df, in double precision, kept as float32
        distinct, inverse = np.unique(df, return_inverse=True)
        idf_d = [idf_fn(float(v), float(n_docs)) for v in distinct.tolist()]
        idf = np.asarray(idf_d, dtype=np.float32)[inverse]  # (n_terms,)
        tfc = tf_fn(tf, lengths[docs].astype(np.float64), avg_length, params.k1, params.b)
        scores = idf[terms].astype(np.float64) * tfc  # (nnz,) float32 idf times float64 tf part
        nonoccurrence = None
        if nonoccurs:
            absent = tf_fn(0, avg_length, avg_length, params.k1, params.b)
            nonoccurrence = np.asarray([v * absent for v in idf_d], dtype=np.float32)[inverse]
            scores -= nonoccurrence[terms]
        return cls(scores.astype(np.float32), docs.astype(np.int32), indptr, nonoccurrence, n_docs)

    def block(self, queries: Sequence[Ints]) -> Floats:
        """(len(queries), num_docs) scores: each row the float32 sum of its terms' rows, in order.

        One sparse x dense product as a single ``np.add.at`` scatter, fed term ``0`` of every
        query, then term ``1`` and so on, so each score is summed left to right (query order).
        """
        n_docs = self.num_docs
        out = np.zeros((len(queries), n_docs), dtype=np.float32)
        width = max((len(q) for q in queries), default=0)
        slots = np.full((width, len(queries)), -1, dtype=np.int64)  # slots[j, i]: term j of i
        for row, query in enumerate(queries):
            slots[: len(query), row] = query
        pairs = np.flatnonzero(slots >= 0)  # (query, term) pairs, term position-major
        terms, rows = slots.flat[pairs], pairs % max(len(queries), 1)
        starts, counts = self.indptr[terms], self.indptr[terms + 1] - self.indptr[terms]
        entries = _concat_ranges(starts, counts)
        index = np.int32 if out.size < 1 << 31 else np.int64
        target = np.repeat((rows * n_docs).astype(index), counts) + self.docs[entries]
        np.add.at(out.reshape(-1), target, self.data[entries])
        if self.nonoccurrence is not None:
            for row, query in enumerate(queries):
                out[row] += self.nonoccurrence[query].sum()
        return out


def _stable_order(keys: Ints, n_keys: int) -> Ints:
    """Stable argsort of small non-negative ints: LSD radix passes over 16-bit digits."""
    if n_keys <= 1 << 16:
        return np.argsort(keys.astype(np.uint16), kind="stable")
    order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    high = keys[order] >> 16
    if n_keys <= 1 << 32:
        return order[np.argsort(high.astype(np.uint16), kind="stable")]
    return order[np.argsort(high, kind="stable")]


def _concat_ranges(starts: Ints, counts: Ints) -> Ints:
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])`` without the loop."""
    total = int(counts.sum())
    offsets = np.cumsum(counts) - counts  # where each range begins in the output
    return np.repeat(starts - offsets, counts) + np.arange(total, dtype=np.int64)


def top_k(scores: Floats, k: int) -> tuple[Ints, Floats]:
    """Per row, the ``k`` best positive scores, best first; equal scores go to the lower column.

    Columns scoring 0 or less (no query term) are left out: -1 / 0.0 padding.
    """
    n_rows, n_cols = scores.shape
    depth = min(k, n_cols)
    positions = np.full((n_rows, k), -1, dtype=np.int64)
    values = np.zeros((n_rows, k), dtype=np.float32)
    if n_rows == 0 or depth == 0:
        return positions, values
    negated = -scores  # partitioning for the smallest is much faster here than for the largest
    chosen = np.argpartition(negated, depth - 1, axis=1)[:, :depth]  # (n_rows, depth), unsorted
    found = np.take_along_axis(negated, chosen, axis=1)
    cut = found.max(axis=1)  # the depth-th best
    tied = np.count_nonzero(negated <= cut[:, None], axis=1) > depth
    for row in np.flatnonzero(tied & (cut < 0)).tolist():  # a tie across the cut: lower columns
        better = np.flatnonzero(negated[row] < cut[row])
        level = np.flatnonzero(negated[row] == cut[row])[: depth - len(better)]
        chosen[row] = np.concatenate([better, level])
        found[row] = negated[row, chosen[row]]
    order = np.lexsort((chosen, found), axis=1)  # best first, then lower column
    chosen = np.take_along_axis(chosen, order, axis=1)
    found = -np.take_along_axis(found, order, axis=1)
    matched = found > 0
    positions[:, :depth] = np.where(matched, chosen, -1)
    values[:, :depth] = np.where(matched, found, 0.0)
    return positions, values


def _encode(tokens: Sequence[Sequence[str]]) -> tuple[dict[str, int], Ints, Ints]:
    """Vocabulary (first appearance order), every token's id, and each document's length."""
    lengths = np.fromiter(map(len, tokens), np.int64, len(tokens))
    total = int(lengths.sum())
    first: dict[str, int] = {}
    # each token's first position among all tokens: a C-level loop (setdefault over a counter)
    flat = itertools.chain.from_iterable(tokens)
    seen = np.fromiter(map(first.setdefault, flat, itertools.count()), np.int64, total)
    dense = np.zeros(total, dtype=np.int64)
    dense[np.fromiter(first.values(), np.int64, len(first))] = np.arange(len(first))
    vocab = dict(zip(first, range(len(first)), strict=True))
    return vocab, dense[seen], lengths


class BM25Index:
    """A BM25 index of one corpus with one set of parameters."""

    def __init__(
        self,
        scores: TermScores,
        vocab: dict[str, int],
        params: BM25Params,
        corpus_ids: Sequence[str],
    ) -> None:
        if scores.num_docs != len(corpus_ids):
            raise ValueError(f"index of {scores.num_docs} docs for {len(corpus_ids)} corpus ids")
        self.scores = scores
        self.vocab = vocab
        self.params = params
        self.corpus_ids = corpus_ids
        self.tokenize = BM25Tokenizer(params)

    @classmethod
    def from_tokens(
        cls, tokens: Sequence[Sequence[str]], params: BM25Params, corpus_ids: Sequence[str]
    ) -> BM25Index:
        """Index already tokenized documents (``tokens[i]`` is ``corpus_ids[i]``)."""
        vocab, term_ids, lengths = _encode(tokens)
        return cls(
            TermScores.build(term_ids, lengths, len(vocab), params), vocab, params, corpus_ids
        )

    @classmethod
    def build(
        cls, corpus: Corpus, params: BM25Params | None = None, progress: Progress = no_progress
    ) -> BM25Index:
        params = params or BM25Params()
        progress(0, len(corpus), "bm25: tokenizing")
        tokens = BM25Tokenizer(params)(corpus.full_texts())
        progress(len(corpus) // 2, len(corpus), "bm25: indexing")
        index = cls.from_tokens(tokens, params, corpus.ids)
        progress(len(corpus), len(corpus), "bm25: indexed")
        return index

    def save(self, folder: Path, corpus_fingerprint: str) -> None:
        """Write the index to ``folder`` atomically: .npy arrays, the vocabulary, the metadata."""
        with atomic_path(folder) as temp:
            temp.mkdir()
            for name in _ARRAYS:
                np.save(temp / f"{name}.npy", getattr(self.scores, name), allow_pickle=False)
            if self.scores.nonoccurrence is not None:
                np.save(temp / "nonoccurrence.npy", self.scores.nonoccurrence, allow_pickle=False)
            (temp / _VOCAB_FILE).write_text(json.dumps(list(self.vocab), ensure_ascii=False))
            meta = {
                "format": FORMAT_VERSION,
                "params": asdict(self.params),
                "corpus_fingerprint": corpus_fingerprint,
                "num_docs": self.scores.num_docs,
            }
            (temp / _PARAMS_FILE).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: Path, corpus: Corpus) -> BM25Index:
        meta = json.loads((folder / _PARAMS_FILE).read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"{folder} holds a BM25 index of another format; build it again")
        if meta.get("corpus_fingerprint") != corpus.fingerprint:
            raise ValueError(f"{folder} indexes another corpus than the one given")
        arrays = {n: np.load(folder / f"{n}.npy", mmap_mode="r") for n in _ARRAYS}
        nonoccurrence_file = folder / "nonoccurrence.npy"
        nonoccurrence = np.load(nonoccurrence_file) if nonoccurrence_file.is_file() else None
        scores = TermScores(nonoccurrence=nonoccurrence, num_docs=int(meta["num_docs"]), **arrays)
        tokens = json.loads((folder / _VOCAB_FILE).read_text())
        vocab = dict(zip(tokens, range(len(tokens)), strict=True))
        return cls(scores, vocab, BM25Params(**meta["params"]), corpus.ids)

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
        if (folder / _PARAMS_FILE).is_file():
            try:
                saved = cls.load(folder, corpus)
            except ValueError as exc:  # another format (e.g. a bm25s folder) or corpus
                logger.info("rebuilding the BM25 index at %s: %s", folder, exc)
            else:
                if saved.params == params:
                    logger.info("reusing BM25 index at %s", folder)
                    return saved
        index = cls.build(corpus, params, progress)
        index.save(folder, corpus.fingerprint)
        return index

    def term_ids(self, tokens: Sequence[str]) -> Ints:
        """The query's in-vocabulary terms, in order, repeats kept (a repeat counts twice)."""
        vocab = self.vocab
        return np.asarray([vocab[t] for t in tokens if t in vocab], dtype=np.int64)

    def score_documents(self, tokens: Sequence[str], positions: Sequence[int]) -> list[float]:
        """BM25 score of one tokenized query for the given corpus rows (e.g. positives outside
        the top-k): read from the score row a search computes, so equal to the search's scores."""
        row = self.scores.block([self.term_ids(tokens)])[0]  # (num_docs,)
        return row[np.asarray(positions, dtype=np.int64)].tolist()

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
    ) -> SearchResults:
        """Top-k per tokenized query. Documents that match no query term are left out (-1)."""
        return self.search_and_score(query_tokens, query_ids, k, progress=progress)[0]

    def search_and_score(
        self,
        query_tokens: Sequence[Sequence[str]],
        query_ids: Sequence[str],
        k: int,
        also: Sequence[Sequence[int]] | None = None,
        progress: Progress = no_progress,
    ) -> tuple[SearchResults, list[list[float]]]:
        """Top-k per query, plus each query's scores for the corpus rows ``also[i]`` (read from
        the same score block, so a row also in the top-k has exactly its listed score)."""
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        n_queries = len(query_tokens)
        positions = np.full((n_queries, k), -1, dtype=np.int64)
        scores = np.zeros((n_queries, k), dtype=np.float32)
        extra: list[list[float]] = []
        queries = [self.term_ids(t) for t in query_tokens]
        step = max(1, _BLOCK_CELLS // max(self.scores.num_docs, 1))  # queries scored at once
        for start in range(0, n_queries, step):
            block = self.scores.block(queries[start : start + step])  # (step, num_docs)
            rows = slice(start, start + len(block))
            positions[rows], scores[rows] = top_k(block, k)
            if also is not None:
                extra += [block[i, list(also[start + i])].tolist() for i in range(len(block))]
            progress(start + len(block), n_queries, "bm25: searching")
        return SearchResults(tuple(query_ids), positions, scores, self.corpus_ids), extra
