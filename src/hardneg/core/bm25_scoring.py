"""BM25 scoring: the formulas, the eager (term x document) score matrix, and the top-k.

Scoring follows Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25 and Beyond"
(2009), in the variants of Kamphuis et al., "Which BM25 Do You Mean?" (ECIR 2020); Lucene's by
default. As in bm25s (Lù, "BM25S", 2024), every (term, document) score is computed once when
indexing, here with vectorised numpy; a batch of queries is scored as one sparse x dense
product into a (queries x documents) float32 block, and the top-k is read from that block.
Scores are float32 sums in query-term order, bit-identical to bm25s's (tested).
"""

from __future__ import annotations

import math
import mmap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from hardneg.core.index_params import BM25Params

DELTA = 0.5  # BM25L / BM25+ lower bound of the term-frequency part (Lv & Zhai, 2011)
_FOLDS = 16  # top_k: columns folded into one group maximum
_SCORE_SLICE = 1 << 22  # (term, document) scores computed at once when indexing

Real = Any  # a float or a float64 array: the formulas below serve both
Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float32]
_SMALLEST = np.nextafter(np.float32(0), np.float32(1))  # the least positive float32


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


@dataclass(frozen=True)
class TermCounts:
    """Term frequency of every (term, document) pair that occurs, by term then document."""

    terms: npt.NDArray[np.int32]  # (nnz,)
    docs: npt.NDArray[np.int32]  # (nnz,)
    tf: npt.NDArray[np.int32]  # (nnz,)
    n_terms: int

    @classmethod
    def count(cls, term_ids: Ints, lengths: Ints, n_terms: int, first_doc: int = 0) -> TermCounts:
        """From every token's term id (documents ``first_doc``, ``first_doc + 1``... one after
        another, ``lengths[i]`` tokens each)."""
        n_docs = len(lengths)
        doc_of = np.repeat(np.arange(first_doc, first_doc + n_docs, dtype=np.int32), lengths)
        order = _stable_order(term_ids, n_terms)  # by term, documents ascending within a term
        terms, docs = term_ids[order].astype(np.int32), doc_of[order]
        del order, doc_of
        first = np.ones(len(terms), dtype=bool)  # first token of each (term, doc) run
        first[1:] = (terms[1:] != terms[:-1]) | (docs[1:] != docs[:-1])
        starts = np.flatnonzero(first)
        tf = np.diff(np.append(starts, len(terms))).astype(np.int32)
        return cls(terms[starts], docs[starts], tf, n_terms)

    @classmethod
    def concatenate(cls, parts: list[TermCounts], n_terms: int) -> TermCounts:
        """The counts of consecutive document ranges (``parts`` in document order) as one.

        ``parts`` is emptied as it is read, so each part's memory goes once it is merged.
        """
        terms = np.concatenate([p.terms for p in parts]) if parts else np.zeros(0, np.int32)
        order = _stable_order(terms, n_terms)  # stable: documents stay ascending within a term
        terms = terms[order]
        columns = []
        for name in ("docs", "tf"):
            column = np.concatenate([getattr(p, name) for p in parts]) if parts else terms[:0]
            columns.append(column[order])
            del column
        parts.clear()
        return cls(terms, columns[0], columns[1], n_terms)


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
        return cls.from_counts(TermCounts.count(term_ids, lengths, n_terms), lengths, params)

    @classmethod
    def from_counts(cls, counts: TermCounts, lengths: Ints, params: BM25Params) -> TermScores:
        """From the (term, document) frequencies of every document (``lengths[d]`` tokens)."""
        idf_fn, tf_fn, nonoccurs = _VARIANTS[params.method]
        n_docs, n_terms = len(lengths), counts.n_terms
        df = np.bincount(counts.terms, minlength=n_terms)
        indptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(df, out=indptr[1:])
        avg_length = float(lengths.mean()) if n_docs else 0.0
        # idf (and the non-occurrence score) per distinct df, in double precision, kept as float32
        distinct, inverse = np.unique(df, return_inverse=True)
        idf_d = [idf_fn(float(v), float(n_docs)) for v in distinct.tolist()]
        idf = np.asarray(idf_d, dtype=np.float32)[inverse]  # (n_terms,)
        nonoccurrence = None
        if nonoccurs:
            absent = tf_fn(0, avg_length, avg_length, params.k1, params.b)
            nonoccurrence = np.asarray([v * absent for v in idf_d], dtype=np.float32)[inverse]
        scores = np.empty(len(counts.terms), dtype=np.float32)  # (nnz,)
        # in slices: the float64 temporaries stay ~100 MiB whatever the corpus size
        for start in range(0, len(scores), _SCORE_SLICE):
            part = slice(start, start + _SCORE_SLICE)
            terms, docs = counts.terms[part], counts.docs[part]
            tf = counts.tf[part].astype(np.float64)
            tfc = tf_fn(tf, lengths[docs].astype(np.float64), avg_length, params.k1, params.b)
            value = idf[terms].astype(np.float64) * tfc  # float32 idf times float64 tf part
            if nonoccurrence is not None:
                value -= nonoccurrence[terms]
            scores[part] = value
        return cls(scores, counts.docs, indptr, nonoccurrence, n_docs)

    def block(self, queries: Sequence[Ints]) -> Floats:
        """(len(queries), num_docs) scores: each row the float32 sum of its terms' rows, in order.

        One sparse x dense product as a single ``np.add.at`` scatter, fed term ``0`` of every
        query, then term ``1`` and so on, so each score is summed left to right (query order);
        a block of one query adds its terms' rows one by one, in the same order.
        """
        n_docs = self.num_docs
        out = np.zeros((len(queries), n_docs), dtype=np.float32)
        if len(queries) == 1:  # a large corpus: one query per block
            self._add_rows(out[0], queries[0])
        else:
            self._scatter(out, queries)
        if self.nonoccurrence is not None:
            sums = [self.nonoccurrence[query].sum() for query in queries]
            out += np.asarray(sums, dtype=np.float32).reshape(-1, 1)
        return out

    def release(self) -> None:
        """Unmap the resident pages of memory-mapped arrays (MADV_DONTNEED): they stay in the page
        cache and fault back in when read, so a long search's resident set stays bounded instead
        of growing to the whole index file. A no-op for in-memory arrays."""
        for array in (self.data, self.docs):
            mapped = getattr(array, "_mmap", None)  # numpy.memmap's mmap object
            if isinstance(mapped, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
                mapped.madvise(mmap.MADV_DONTNEED)

    def _add_rows(self, out: Floats, query: Ints) -> None:
        """One query: its terms' rows added into ``out`` one after another (query order); a
        term's documents are distinct, so each ``add.at`` is a plain scatter. On a corpus too big
        for several queries per block this is ~2.5x faster than ``_scatter``'s index arrays."""
        for term in query.tolist():
            start, stop = int(self.indptr[term]), int(self.indptr[term + 1])
            np.add.at(out, self.docs[start:stop], self.data[start:stop])

    def _scatter(self, out: Floats, queries: Sequence[Ints]) -> None:
        """Several queries in one scatter-add (see ``block``)."""
        n_docs = self.num_docs
        width = max((len(q) for q in queries), default=0)
        slots = np.full((width, len(queries)), -1, dtype=np.int64)  # slots[j, i]: term j of i
        for row, query in enumerate(queries):
            slots[: len(query), row] = query
        pairs = np.flatnonzero(slots >= 0)  # (query, term) pairs, term position-major
        terms, rows = slots.flat[pairs], pairs % max(len(queries), 1)
        starts, counts = self.indptr[terms], self.indptr[terms + 1] - self.indptr[terms]
        # 32-bit indices where they fit: half the memory traffic of the 3 big arrays below
        entries = _concat_ranges(starts, counts, narrow=len(self.docs) < 1 << 31)
        cell = np.int32 if out.size < 1 << 31 else np.int64
        target = np.repeat((rows * n_docs).astype(cell), counts) + self.docs.take(entries)
        np.add.at(out.reshape(-1), target, self.data.take(entries))


def _stable_order(keys: npt.NDArray[np.signedinteger[Any]], n_keys: int) -> Ints:
    """Stable argsort of small non-negative ints: LSD radix passes over 16-bit digits."""
    if n_keys <= 1 << 16:
        return np.argsort(keys.astype(np.uint16), kind="stable")
    order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    high = keys[order] >> 16
    if n_keys <= 1 << 32:
        return order[np.argsort(high.astype(np.uint16), kind="stable")]
    return order[np.argsort(high, kind="stable")]


def _concat_ranges(starts: Ints, counts: Ints, narrow: bool) -> npt.NDArray[Any]:
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])`` without the loop,
    as int32 where ``narrow`` (the values must fit), else int64."""
    kind = np.int32 if narrow else np.int64
    offsets = np.cumsum(counts) - counts  # where each range begins in the output
    total = int(counts.sum())
    return np.repeat((starts - offsets).astype(kind), counts) + np.arange(total, dtype=kind)


def top_k(scores: Floats, k: int) -> tuple[Ints, Floats]:
    """Per row, the ``k`` best positive scores, best first; equal scores go to the lower column.

    Columns scoring 0 or less (no query term) are left out: -1 / 0.0 padding.

    No row is partitioned in full. The columns fall into groups of ``_FOLDS`` (column ``j``,
    ``j + w``, ``j + 2w``...); a row's ``depth``-th best group maximum is a score that at least
    ``depth`` cells reach, so the row's top ``depth``, ties at the last place included, lie
    among the cells at or above it. Only those cells are sorted: by row, score descending,
    then column (one stable sort of a 64-bit key).
    """
    n_rows, n_cols = scores.shape
    depth = min(k, n_cols)
    positions = np.full((n_rows, k), -1, dtype=np.int64)
    values = np.zeros((n_rows, k), dtype=np.float32)
    if n_rows == 0 or depth == 0:
        return positions, values
    floor = np.full((n_rows, 1), _SMALLEST, dtype=np.float32)  # only positive scores count
    width = -(-n_cols // _FOLDS)  # groups
    if width > depth:
        maxima = scores[:, :width].copy()  # (n_rows, width)
        for start in range(width, n_cols, width):
            part = scores[:, start : start + width]
            np.maximum(maxima[:, : part.shape[1]], part, out=maxima[:, : part.shape[1]])
        maxima *= -1  # partitioning for the smallest is much faster here than for the largest
        cut = -np.partition(maxima, depth - 1, axis=1)[:, depth - 1 : depth]
        np.maximum(floor, cut, out=floor)
    cells = np.flatnonzero(scores >= floor)  # row-major: rows ascending, columns within a row
    rows, cols = np.divmod(cells, n_cols)
    found = scores.reshape(-1)[cells]  # all > 0, so their float32 bits order like the values
    key = (rows << 32) | (0xFFFFFFFF - found.view(np.uint32).astype(np.int64))
    order = np.argsort(key, kind="stable")  # by row, best score first, then lower column
    rows, cols, found = rows[order], cols[order], found[order]
    counts = np.bincount(rows, minlength=n_rows)
    rank = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    keep = rank < depth
    rows, rank = rows[keep], rank[keep]
    positions[rows, rank] = cols[keep]
    values[rows, rank] = found[keep]
    return positions, values
