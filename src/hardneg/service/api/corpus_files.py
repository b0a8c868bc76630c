"""Checking uploaded corpus, queries and qrels files with core's loaders, then storing them.

Each function reads a file that :mod:`hardneg.service.api.uploads` received into a temporary
folder, validates it completely (a bad line raises ``DataError`` naming the line), and only
then moves it into place atomically and updates the corpus record. On any error nothing is
stored. These are blocking calls: routes run them in a worker thread.
"""

from __future__ import annotations

import gzip
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from hardneg.core.atomic import atomic_path
from hardneg.core.beir import (
    CorpusScan,
    DataError,
    available_splits,
    check_qrels,
    find_corpus_file,
    load_qrels,
    load_queries,
    scan_corpus,
)
from hardneg.service.api.uploads import Received
from hardneg.service.jobs.corpora import (
    CorpusRecord,
    CorpusStore,
    content_version,
    corpora_root,
    new_corpus_id,
    ready_fields,
)

UPLOAD_NAME = "upload"  # how the client's file is called in error messages (no server paths)
MAX_LINE_BYTES = 16 * 1024 * 1024  # one document, query or judgement; BEIR's largest are ~1 MB


def check_lines(path: Path, gzipped: bool = False, limit: int = MAX_LINE_BYTES) -> None:
    """Every line is valid UTF-8 and at most ``limit`` bytes, read without holding more than
    one line: a 100 MB line or a stray binary byte is named by its line before any parsing."""
    number = 0
    try:
        with gzip.open(path, "rb") if gzipped else path.open("rb") as handle:
            while line := handle.readline(limit + 1):
                number += 1
                if len(line) > limit and not line.endswith(b"\n"):
                    raise DataError(UPLOAD_NAME, number, f"line is longer than {limit} bytes")
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    reason = f"not valid UTF-8 ({exc.reason} at byte {exc.start + 1})"
                    raise DataError(UPLOAD_NAME, number, reason) from None
    except (OSError, EOFError) as exc:
        raise DataError(UPLOAD_NAME, None, f"not a valid gzip file ({exc})") from None


def _public(error: DataError) -> DataError:
    """The same error, naming the upload instead of a server-side temporary path."""
    return DataError(UPLOAD_NAME, error.line, error.reason)


def store_uploaded_corpus(
    received: Received, home: Path, name: str, store: CorpusStore
) -> CorpusRecord:
    """Validate a corpus upload and keep it as a new corpus (its own BEIR folder)."""
    check_lines(received.path, received.gzipped)
    try:
        corpus = scan_corpus(received.path)  # ids and fingerprint; texts read and dropped
    except DataError as exc:
        raise _public(exc) from None
    corpus_id = new_corpus_id()
    folder = corpora_root(home) / corpus_id
    corpus_name = "corpus.jsonl.gz" if received.gzipped else "corpus.jsonl"
    with atomic_path(folder) as temp:
        temp.mkdir()
        received.path.rename(temp / corpus_name)
    record = CorpusRecord(id=corpus_id, name=name, source="upload", folder=str(folder))
    fields = ready_fields(corpus.fingerprint, len(corpus), 0, {}, folder)
    record = replace(record, **fields)  # type: ignore[arg-type]
    try:
        store.create(record)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return record


def _split_counts(folder: Path) -> dict[str, int]:
    return {
        split: len(load_qrels(folder / "qrels" / f"{split}.tsv"))
        for split in available_splits(folder)
    }


def _corpus_of(record: CorpusRecord) -> CorpusScan:
    return scan_corpus(find_corpus_file(record.path))


def store_queries(
    received: Received, record: CorpusRecord, store: CorpusStore, fence: str | None = None
) -> CorpusRecord:
    """Validate queries (and that existing qrels still name only known queries); replace them.

    Call it holding the corpus's write lock (``fence`` is its token)."""
    plain = received.path  # received decompressed
    check_lines(plain)
    try:
        queries = load_queries(plain)
    except DataError as exc:
        raise _public(exc) from None
    if not queries:
        raise DataError(UPLOAD_NAME, None, "no queries in the upload")
    folder = record.path
    splits = available_splits(folder)
    if splits:
        corpus = _corpus_of(record)
        for split in splits:
            qrels_path = folder / "qrels" / f"{split}.tsv"
            try:
                check_qrels(qrels_path, load_qrels(qrels_path), queries, corpus)
            except DataError as exc:
                raise DataError(f"qrels/{split}.tsv", None, exc.reason) from None
    return _replace_file(
        plain, folder / "queries.jsonl", lambda: _refresh(record, store, len(queries), fence)
    )


def store_qrels(
    received: Received,
    record: CorpusRecord,
    split: str,
    store: CorpusStore,
    fence: str | None = None,
) -> CorpusRecord:
    """Validate a qrels TSV against the stored corpus and queries; replace that split's file.

    Call it holding the corpus's write lock (``fence`` is its token)."""
    plain = received.path  # received decompressed
    check_lines(plain)
    queries_path = record.path / "queries.jsonl"
    if not queries_path.is_file():
        raise DataError(UPLOAD_NAME, None, "upload the queries before the qrels")
    try:
        qrels = load_qrels(plain)
        check_qrels(plain, qrels, load_queries(queries_path), _corpus_of(record))
    except DataError as exc:
        raise _public(exc) from None
    if not qrels:
        raise DataError(UPLOAD_NAME, None, "no judgements in the upload")
    target = record.path / "qrels" / f"{split}.tsv"
    return _replace_file(plain, target, lambda: _refresh(record, store, record.queries, fence))


def _replace_file(new: Path, target: Path, commit: Callable[[], CorpusRecord]) -> CorpusRecord:
    """Move ``new`` over ``target``, then ``commit`` the record; if the commit fails (Redis
    refuses the write, the lock was lost) put the old file back: the record and the files on
    disk never disagree."""
    target.parent.mkdir(parents=True, exist_ok=True)
    backup = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old.tmp")
    had = target.is_file()
    if had:
        os.link(target, backup)
    try:
        new.replace(target)
        try:
            return commit()
        except BaseException:
            if had:
                backup.replace(target)
            else:
                target.unlink(missing_ok=True)
            raise
    finally:
        backup.unlink(missing_ok=True)


def _refresh(
    record: CorpusRecord, store: CorpusStore, queries: int, fence: str | None
) -> CorpusRecord:
    folder = record.path
    version = content_version(record.fingerprint or "", folder)
    splits = _split_counts(folder)
    updated = store.update(
        record.id,
        lambda old: replace(old, queries=queries, splits=splits, version=version),
        fence=fence,
    )
    if updated is None:
        raise KeyError(record.id)
    return updated
