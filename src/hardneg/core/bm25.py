"""BM25 over a corpus: the tokenizer, and an index of its eager score matrix, saved as .npy.

Memory: building tokenizes the corpus in chunks of ``_TOKENIZE_CHUNK`` documents, keeping only
each chunk's (term, document, frequency) counts, so it peaks near a few dozen bytes per
(term, document) pair, never the whole corpus's token lists. Searching scores queries in blocks of
``_BLOCK_CELLS`` query x document cells against the memory-mapped arrays: bounded whatever the
number of queries (one query's row, 4 bytes per document, is the floor); every
``_RELEASE_EVERY`` blocks the index pages it touched are unmapped (they stay in the page cache),
so the resident set does not grow to the whole index file.

The scoring (formulas, score matrix, top-k) is in ``core.bm25_scoring``; ``BM25Params`` and
``top_k`` are re-exported here.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import Stemmer

from hardneg.core.atomic import atomic_path
from hardneg.core.beir import Corpus
from hardneg.core.bm25_scoring import Ints, TermCounts, TermScores, top_k
from hardneg.core.index_params import BM25Params
from hardneg.core.progress import Progress, no_progress
from hardneg.core.results import SearchResults

__all__ = [
    "FORMAT_VERSION",
    "BM25Index",
    "BM25Params",
    "BM25Tokenizer",
    "TermScores",
    "TokenIds",
    "top_k",
]

logger = logging.getLogger(__name__)

_PARAMS_FILE = "hardneg-bm25.json"
_VOCAB_FILE = "vocab.json"
_ARRAYS = ("data", "docs", "indptr")
# 2: our own numpy index (1 was a bm25s folder); indexes of another format are rebuilt
FORMAT_VERSION = 2
# query x document cells scored at once: 1 MiB of float32, so that the scatter-adds of a block
# land in a core's L2 cache (on SciFact, blocks of 16 MiB made the search ~30% slower)
_BLOCK_CELLS = 1 << 18
_TOKENIZE_CHUNK = 16384  # documents tokenized at once when building an index
_RELEASE_EVERY = 64  # score blocks between unmapping the index pages a search touched


@dataclass(frozen=True)
class TokenIds:
    """Tokenized documents as term ids, what an index is built from."""

    ids: Ints  # (n_tokens,) every token's term id, documents one after another
    lengths: Ints  # (n_docs,) tokens per document
    vocab: dict[str, int]  # term -> id, the ids 0..len(vocab) - 1


class BM25Tokenizer:
    """Lower-case word tokens, English stopwords removed, Snowball-stemmed (bm25s's tokenizer)."""

    def __init__(self, params: BM25Params) -> None:
        self._stemmer = Stemmer.Stemmer(params.stemmer) if params.stemmer else None
        self._stopwords: str | list[str] = params.stopwords or []

    def _tokenize(self, texts: Sequence[str], return_ids: bool) -> Any:
        return bm25s.tokenize(
            list(texts),
            stopwords=self._stopwords,
            stemmer=self._stemmer,
            return_ids=return_ids,
            show_progress=False,
        )

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        return [list(t) for t in self._tokenize(texts, return_ids=False)]

    def ids(self, texts: Sequence[str]) -> TokenIds:
        """The same tokens as term ids. bm25s's tokenizer makes the ids first (the strings of
        ``__call__`` are rebuilt from them), so this is the cheaper call."""
        vocab: dict[str, int] = {}
        flat, lengths = self.ids_into(texts, vocab)
        return TokenIds(flat, lengths, vocab)

    def ids_into(self, texts: Sequence[str], vocab: dict[str, int]) -> tuple[Ints, Ints]:
        """(every token's id, tokens per text) with the ids of ``vocab``, which gains the terms
        it lacks: tokenizing a corpus chunk by chunk into one vocabulary."""
        tokenized = self._tokenize(texts, return_ids=True)
        ids: list[list[int]] = tokenized.ids
        local: dict[str, int] = tokenized.vocab
        remap = np.zeros(len(local), dtype=np.int64)  # chunk id -> vocab id
        for term, number in local.items():
            remap[number] = vocab.setdefault(term, len(vocab))
        lengths = np.fromiter(map(len, ids), np.int64, len(ids))
        flat = np.fromiter(itertools.chain.from_iterable(ids), np.int64, int(lengths.sum()))
        return remap[flat], lengths


def _encode(tokens: Sequence[Sequence[str]]) -> TokenIds:
    """Token strings as ids, the vocabulary in first appearance order."""
    lengths = np.fromiter(map(len, tokens), np.int64, len(tokens))
    total = int(lengths.sum())
    first: dict[str, int] = {}
    # each token's first position among all tokens: a C-level loop (setdefault over a counter)
    flat = itertools.chain.from_iterable(tokens)
    seen = np.fromiter(map(first.setdefault, flat, itertools.count()), np.int64, total)
    dense = np.zeros(total, dtype=np.int64)
    dense[np.fromiter(first.values(), np.int64, len(first))] = np.arange(len(first))
    vocab = dict(zip(first, range(len(first)), strict=True))
    return TokenIds(dense[seen], lengths, vocab)


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
        return cls.from_ids(_encode(tokens), params, corpus_ids)

    @classmethod
    def from_ids(cls, tokens: TokenIds, params: BM25Params, corpus_ids: Sequence[str]) -> BM25Index:
        """Index documents tokenized to term ids (document ``i`` is ``corpus_ids[i]``)."""
        scores = TermScores.build(tokens.ids, tokens.lengths, len(tokens.vocab), params)
        return cls(scores, tokens.vocab, params, corpus_ids)

    @classmethod
    def build(
        cls, corpus: Corpus, params: BM25Params | None = None, progress: Progress = no_progress
    ) -> BM25Index:
        """Tokenize ``corpus`` chunk by chunk (counts kept, token lists dropped), then score."""
        params = params or BM25Params()
        tokenizer = BM25Tokenizer(params)
        vocab: dict[str, int] = {}
        parts: list[TermCounts] = []
        lengths: list[Ints] = [np.zeros(0, dtype=np.int64)]
        total = len(corpus)
        progress(0, total, "bm25: tokenizing")
        for start in range(0, total, _TOKENIZE_CHUNK):
            stop = min(start + _TOKENIZE_CHUNK, total)
            texts = corpus.full_texts(start, stop)
            ids, chunk_lengths = tokenizer.ids_into(texts, vocab)
            parts.append(TermCounts.count(ids, chunk_lengths, len(vocab), start))
            lengths.append(chunk_lengths)
            progress(stop, total, "bm25: tokenizing")
        counts = TermCounts.concatenate(parts, len(vocab))
        scores = TermScores.from_counts(counts, np.concatenate(lengths), params)
        progress(total, total, "bm25: indexed")
        return cls(scores, vocab, params, corpus.ids)

    def save(self, folder: Path, corpus_fingerprint: str) -> None:
        """Write the index to ``folder`` atomically: .npy arrays, the vocabulary, the metadata."""
        with atomic_path(folder) as temp:
            temp.mkdir()
            for name in _ARRAYS:
                np.save(temp / f"{name}.npy", getattr(self.scores, name), allow_pickle=False)
            if self.scores.nonoccurrence is not None:
                np.save(temp / "nonoccurrence.npy", self.scores.nonoccurrence, allow_pickle=False)
            terms = sorted(self.vocab, key=self.vocab.__getitem__)  # by id
            (temp / _VOCAB_FILE).write_text(json.dumps(terms, ensure_ascii=False))
            meta = {
                "format": FORMAT_VERSION,
                "params": self.params.model_dump(),
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
            if (start // step) % _RELEASE_EVERY == _RELEASE_EVERY - 1:
                self.scores.release()  # the memory-mapped index: resident pages dropped
        return SearchResults(tuple(query_ids), positions, scores, self.corpus_ids), extra
