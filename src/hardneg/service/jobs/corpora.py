"""Corpus records in Redis and where corpus files live on the shared data directory.

A corpus is a BEIR folder (``corpus.jsonl[.gz]``, optional ``queries.jsonl`` and
``qrels/<split>.tsv``). Uploaded corpora live under ``<home>/corpora/<id>/``; registered ones
(a BEIR name or a server-side path) point at their folder and are read-only.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import redis

from hardneg.core.beir import SPLITS
from hardneg.service.jobs.keys import Keys

CorpusSource = Literal["upload", "beir", "path", "generated"]
CorpusState = Literal["pending", "ready", "failed"]
_CHUNK = 1 << 20
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._ +-]{0,127}$"  # a corpus's display name


def new_corpus_id() -> str:
    return f"c{uuid.uuid4().hex}"


def corpora_root(home: Path) -> Path:
    return home / "corpora"


def uploads_root(home: Path) -> Path:
    """Temporary uploads, on the same filesystem as their destination (atomic rename)."""
    return home / "uploads"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def content_version(fingerprint: str, folder: Path) -> str:
    """Digest of everything a job may read: corpus fingerprint, queries and every qrels file.

    Two corpora with the same version give the same results, so jobs on them may be shared.
    """
    digest = hashlib.sha256(fingerprint.encode())
    queries = folder / "queries.jsonl"
    digest.update(f"|queries:{file_digest(queries) if queries.is_file() else '-'}".encode())
    for split in SPLITS:
        qrels = folder / "qrels" / f"{split}.tsv"
        if qrels.is_file():
            digest.update(f"|{split}:{file_digest(qrels)}".encode())
    return digest.hexdigest()[:32]


@dataclass(frozen=True)
class CorpusRecord:
    id: str
    name: str
    source: CorpusSource
    folder: str
    state: CorpusState = "pending"
    source_ref: str | None = None  # the BEIR name or the resolved server path
    documents: int = 0
    queries: int = 0
    splits: dict[str, int] = field(default_factory=dict)  # split -> judged queries
    fingerprint: str | None = None
    version: str | None = None
    job_id: str | None = None  # the registration job (BEIR name or path)
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    @property
    def path(self) -> Path:
        return Path(self.folder)

    @property
    def owns_files(self) -> bool:
        """Uploaded and generated corpora live in the data directory; deleting them frees it."""
        return self.source in ("upload", "generated")

    @property
    def writable(self) -> bool:
        """Only uploaded corpora take queries and qrels uploads; registered folders are shared."""
        return self.source == "upload"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> CorpusRecord:
        return cls(**json.loads(text))


class CorpusStore:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def get(self, corpus_id: str) -> CorpusRecord | None:
        text = self.client.get(self.keys.corpus(corpus_id))
        return CorpusRecord.from_json(str(text)) if text else None

    def page(self, offset: int = 0, limit: int = 50) -> tuple[list[CorpusRecord], int]:
        total = int(self.client.zcard(self.keys.corpus_index))
        ids = [
            str(i)
            for i in self.client.zrevrange(self.keys.corpus_index, offset, offset + limit - 1)
        ]
        return [r for r in (self.get(i) for i in ids) if r is not None], total

    def create(self, record: CorpusRecord) -> None:
        pipe = self.client.pipeline()
        pipe.set(self.keys.corpus(record.id), record.to_json())
        pipe.zadd(self.keys.corpus_index, {record.id: record.created_at})
        pipe.execute()

    def create_for_source(self, source: str, candidate: CorpusRecord) -> tuple[CorpusRecord, bool]:
        """The corpus registered for ``source`` ("beir:<name>", "path:<dir>"), creating
        ``candidate`` atomically when there is none. Returns (record, created)."""
        pointer = self.keys.corpus_source(source)
        while True:
            with self.client.pipeline() as pipe:
                try:
                    pipe.watch(pointer)
                    owner = pipe.get(pointer)
                    text = pipe.get(self.keys.corpus(str(owner))) if owner else None
                    if text:
                        return CorpusRecord.from_json(str(text)), False
                    pipe.multi()
                    pipe.set(pointer, candidate.id)
                    pipe.set(self.keys.corpus(candidate.id), candidate.to_json())
                    pipe.zadd(self.keys.corpus_index, {candidate.id: candidate.created_at})
                    pipe.execute()
                    return candidate, True
                except redis.WatchError:
                    continue

    def update(
        self,
        corpus_id: str,
        change: Callable[[CorpusRecord], CorpusRecord],
        fence: str | None = None,
    ) -> CorpusRecord | None:
        """Compare-and-swap the record; with ``fence`` (a token from ``corpus_lock``) only while
        the corpus's write lock still holds that token, else ``PermissionError``."""
        key = self.keys.corpus(corpus_id)
        lock = key + ":lock"
        while True:
            with self.client.pipeline() as pipe:
                try:
                    pipe.watch(key, lock) if fence is not None else pipe.watch(key)
                    if fence is not None and pipe.get(lock) != fence:
                        raise PermissionError("the corpus's write lock was lost")
                    text = pipe.get(key)
                    if not text:
                        return None
                    new = replace(change(CorpusRecord.from_json(str(text))), updated_at=time.time())
                    pipe.multi()
                    pipe.set(key, new.to_json())
                    pipe.execute()
                    return new
                except redis.WatchError:
                    continue

    def delete(self, record: CorpusRecord) -> None:
        pipe = self.client.pipeline()
        pipe.delete(self.keys.corpus(record.id))
        pipe.zrem(self.keys.corpus_index, record.id)
        if record.source != "upload" and record.source_ref:
            pipe.delete(self.keys.corpus_source(f"{record.source}:{record.source_ref}"))
        pipe.execute()


def ready_fields(
    fingerprint: str, documents: int, queries: int, splits: Mapping[str, int], folder: Path
) -> dict[str, object]:
    """The record fields of a corpus whose files have been read and checked."""
    return {
        "state": "ready",
        "fingerprint": fingerprint,
        "documents": documents,
        "queries": queries,
        "splits": dict(splits),
        "version": content_version(fingerprint, folder),
        "error": None,
    }
