"""A corpus file is uploaded, fingerprinted, loaded and read without its texts in memory.

A generated ~32 MB ``corpus.jsonl`` (8,000 documents of ~4 KB) goes through what the service
does with a corpus, each step's peak of Python allocations (``tracemalloc``, numpy's included)
bounded by an eighth of the file: the upload's check and registration (ids and fingerprint
kept, texts dropped), ``load_corpus`` (ids and line offsets), the chunked reads of encoding
and BM25 indexing, and random reads (mining's candidate texts). The same file gzipped is held
whole (the documented limit), which the same measure shows. Indexing and mining a file-backed
corpus give what an in-memory one gives.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import redis

from hardneg.core.beir import BeirSplit, Corpus, load_corpus, load_split, scan_corpus
from hardneg.core.bm25 import BM25Index
from hardneg.core.corpus_texts import FileChangedError
from hardneg.miners.bm25 import search_candidates
from hardneg.miners.filters import FilterConfig
from hardneg.miners.selection import select_from_candidates
from hardneg.service.api.corpus_files import store_uploaded_corpus
from hardneg.service.api.uploads import Received
from hardneg.service.jobs.corpora import CorpusStore
from hardneg.service.jobs.keys import Keys
from hardneg.service.jobs.scratch import ScratchFolder
from tests.conftest import write_beir
from tests.test_service_support import REDIS_URL, purge, unique_prefix

T = TypeVar("T")
DOCS, WORDS_PER_DOC, CHUNK = 8000, 700, 256
VOCABULARY = [f"w{i:04d}" for i in range(5000)]


def write_corpus(path: Path) -> int:
    """DOCS documents of ~4 KB of random words, written line by line; the file's bytes."""
    rng = np.random.default_rng(0)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(DOCS):
            words = rng.integers(0, len(VOCABULARY), WORDS_PER_DOC)
            text = " ".join(VOCABULARY[w] for w in words.tolist())
            handle.write(json.dumps({"_id": f"d{i}", "title": f"t{i}", "text": text}) + "\n")
    return path.stat().st_size


def peak_of(step: Callable[[], T]) -> tuple[T, int]:
    """``step()`` and the peak bytes of Python allocations made while it ran."""
    tracemalloc.start()
    try:
        value = step()
        return value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("big") / "corpus.jsonl"
    size = write_corpus(path)
    assert size > 30 * 2**20
    return path, size


@pytest.fixture
def corpora() -> Iterator[CorpusStore]:
    prefix = unique_prefix()
    client = redis.Redis.from_url(REDIS_URL)
    try:
        yield CorpusStore(client, Keys(prefix))
    finally:
        client.close()
        purge(prefix)


def test_upload_scan_load_and_reads_stay_far_below_the_corpus_size(
    big: tuple[Path, int], tmp_path: Path, corpora: CorpusStore
) -> None:
    path, size = big
    bound = size // 8
    home = tmp_path / "home"
    scratch = ScratchFolder(home / "uploads")
    upload = scratch.path / "corpus.jsonl"
    shutil.copyfile(path, upload)
    digest = hashlib.sha256(upload.read_bytes()).hexdigest()
    received = Received(scratch.path, upload, size, digest, False, scratch, size)
    record, upload_peak = peak_of(lambda: store_uploaded_corpus(received, home, "big", corpora))
    scratch.remove()
    scanned, scan_peak = peak_of(lambda: scan_corpus(path))
    corpus, load_peak = peak_of(lambda: load_corpus(path))
    assert record.documents == len(corpus) == len(scanned) == DOCS
    assert record.fingerprint == scanned.fingerprint == corpus.fingerprint
    assert not corpus.in_memory

    def read_in_chunks() -> int:  # what encoding and BM25 indexing do
        return sum(len(corpus.full_texts(s, s + CHUNK)) for s in range(0, len(corpus), CHUNK))

    read, chunks_peak = peak_of(read_in_chunks)
    rng = np.random.default_rng(1)
    picks = rng.integers(0, DOCS, 2000).tolist()
    _, random_peak = peak_of(lambda: [corpus.document(p).text[:10] for p in picks])
    assert read == DOCS
    for name, peak in [("upload", upload_peak), ("scan", scan_peak), ("load", load_peak),
                       ("chunks", chunks_peak), ("random", random_peak)]:  # fmt: skip
        assert peak < bound, f"{name}: {peak / 2**20:.1f} MiB for a {size / 2**20:.0f} MB corpus"

    packed = tmp_path / "corpus.jsonl.gz"
    packed.write_bytes(gzip.compress(path.read_bytes(), compresslevel=1))
    whole, whole_peak = peak_of(lambda: load_corpus(packed))
    assert whole.in_memory and whole.fingerprint == corpus.fingerprint
    assert whole_peak > size // 2  # a gzip corpus is held whole: the measure sees it
    assert corpus.full_texts(100, 110) == whole.full_texts(100, 110)
    assert corpus.document(DOCS - 1) == whole.document(DOCS - 1)


def test_a_file_backed_corpus_indexes_and_mines_like_an_in_memory_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    docs = [
        {"_id": f"d{i}", "title": "" if i % 3 else f"title {i}",
         "text": " ".join(rng.choice(VOCABULARY[:60], int(rng.integers(1, 30))))}
        for i in range(300)
    ]  # fmt: skip
    queries = [{"_id": f"q{i}", "text": str(docs[i * 7]["text"])[:40]} for i in range(30)]
    folder = write_beir(
        tmp_path / "beir", docs, queries, [(f"q{i}", f"d{i * 7}", 1) for i in range(30)]
    )
    split = load_split(folder, "test")
    assert not split.corpus.in_memory
    memory = Corpus.from_documents(split.corpus.documents())
    assert memory.in_memory and memory == split.corpus
    in_memory = BeirSplit(split.name, memory, split.queries, split.qrels)
    runs = []
    for each in (split, in_memory):
        index = BM25Index.build(each.corpus)
        lists = search_candidates(each, index, 20)
        runs.append((lists, select_from_candidates(each, lists, FilterConfig(), "bm25")))
    (file_lists, file_run), (memory_lists, memory_run) = runs
    np.testing.assert_array_equal(file_lists.positions, memory_lists.positions)
    np.testing.assert_array_equal(file_lists.scores, memory_lists.scores)
    assert file_run.rows == memory_run.rows


def test_a_changed_corpus_file_is_refused_when_reopened(tmp_path: Path) -> None:
    import pickle

    folder = write_beir(tmp_path / "beir")
    corpus = load_corpus(folder / "corpus.jsonl")
    first = corpus.document(0)
    replacement = folder / f".{uuid.uuid4().hex}"
    replacement.write_text(json.dumps({"_id": "x", "text": "other words entirely"}) + "\n")
    replacement.replace(folder / "corpus.jsonl")  # the open descriptor still reads the old file
    assert corpus.document(0) == first
    with pytest.raises(FileChangedError, match="changed since the corpus was loaded"):
        pickle.loads(pickle.dumps(corpus))  # another process opens the path again
