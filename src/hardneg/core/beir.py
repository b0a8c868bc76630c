"""BEIR-format data: corpus.jsonl[.gz], queries.jsonl and qrels/{split}.tsv.

Every reader streams its file line by line and raises :class:`DataError` naming the file and the
line on bad input. Nothing here writes to disk. ``load_corpus`` of an uncompressed file keeps
the ids and each line's offset, not the texts (read back when asked for); ``scan_corpus`` keeps
only the ids and the fingerprint.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hardneg.core.corpus_texts import Column, FileTexts, MemoryTexts, Texts

QRELS_HEADER = ("query-id", "corpus-id", "score")
SPLITS = ("train", "dev", "test")
_HEADER_TEXT = "\t".join(QRELS_HEADER)

Qrels = Mapping[str, Mapping[str, int]]
"""query id -> {doc id -> relevance grade}."""


class DataError(ValueError):
    """Bad input data; the message names the file and (where known) the line."""

    def __init__(self, path: Path | str, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str

    @property
    def full_text(self) -> str:
        """Title and body joined the way BEIR's dense evaluation does."""
        return f"{self.title} {self.text}".strip() if self.title else self.text.strip()


class CorpusDigest:
    """The content fingerprint of a corpus, fed one document at a time (order matters)."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def update(self, doc: Document) -> None:
        self._digest.update(json.dumps([doc.id, doc.title, doc.text]).encode())
        self._digest.update(b"\n")

    def hexdigest(self) -> str:
        return self._digest.hexdigest()[:32]


@dataclass(frozen=True)
class Corpus:
    """An ordered, immutable corpus. Row ``i`` of any embedding matrix is ``ids[i]``.

    Its titles and texts are in memory, or (``load_corpus`` of an uncompressed file) read back
    from the file when asked for (:mod:`hardneg.core.corpus_texts`); either way ``ids``, the
    positions and the fingerprint are in memory. Equal corpora have equal ids and fingerprints.
    """

    ids: tuple[str, ...]
    fingerprint: str
    _texts: Texts = field(repr=False, compare=False)
    _positions: Mapping[str, int] = field(repr=False, compare=False, default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def titles(self) -> Sequence[str]:
        return Column(self._texts, 0)

    @property
    def texts(self) -> Sequence[str]:
        return Column(self._texts, 1)

    @property
    def in_memory(self) -> bool:
        """Whether the texts are held in memory (else read back from the corpus file)."""
        return isinstance(self._texts, MemoryTexts)

    def position(self, doc_id: str) -> int:
        """Row of ``doc_id``; raises KeyError for an unknown id."""
        return self._positions[doc_id]

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._positions

    def document(self, position: int) -> Document:
        return Document(self.ids[position], *self._texts.get(position))

    def documents(self, start: int = 0, stop: int | None = None) -> list[Document]:
        """Documents ``[start, stop)`` (one contiguous read for a file-backed corpus)."""
        stop = len(self) if stop is None else min(stop, len(self))
        rows = self._texts.run(start, stop)
        return [Document(self.ids[start + i], *row) for i, row in enumerate(rows)]

    def full_texts(self, start: int = 0, stop: int | None = None) -> list[str]:
        """``full_text`` of documents ``[start, stop)`` (all of them by default)."""
        return [doc.full_text for doc in self.documents(start, stop)]

    @classmethod
    def from_documents(cls, documents: Iterator[Document] | list[Document]) -> Corpus:
        """Build an in-memory corpus (and its fingerprint) from documents with unique ids."""
        ids: list[str] = []
        titles: list[str] = []
        texts: list[str] = []
        positions: dict[str, int] = {}
        digest = CorpusDigest()
        for doc in documents:
            if doc.id in positions:
                raise ValueError(f"duplicate document id {doc.id!r}")
            positions[doc.id] = len(ids)
            ids.append(doc.id)
            titles.append(doc.title)
            texts.append(doc.text)
            digest.update(doc)
        texts_of = MemoryTexts(tuple(titles), tuple(texts))
        return cls(tuple(ids), digest.hexdigest(), texts_of, positions)


@dataclass(frozen=True)
class CorpusScan:
    """What a check of a corpus file needs, its texts read and dropped: the ids and the
    fingerprint (``in`` works as on a :class:`Corpus`)."""

    ids: frozenset[str]
    fingerprint: str

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self.ids


def _iter_json_objects(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    """Yield (line number, object) for each non-blank line of a JSONL file."""
    for number, _start, _length, value in _iter_json_lines(path):
        yield number, value


def _iter_json_lines(path: Path) -> Iterator[tuple[int, int, int, dict[str, object]]]:
    """Yield (line number, byte offset, byte length, object) for each non-blank line of a JSONL
    file (offsets into the decompressed bytes of a gzip file)."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as handle:
            offset = 0
            for number, raw in enumerate(handle, start=1):
                start, offset = offset, offset + len(raw)
                line = raw.decode("utf-8")
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(path, number, f"malformed JSON ({exc.msg})") from None
                except RecursionError:
                    raise DataError(path, number, "JSON nested too deeply") from None
                except ValueError:  # an integer past Python's digit limit
                    limit = sys.get_int_max_str_digits()
                    reason = f"an integer has more than {limit} digits"
                    raise DataError(path, number, reason) from None
                if not isinstance(value, dict):
                    raise DataError(path, number, "expected a JSON object")
                yield number, start, len(raw), value
    except UnicodeDecodeError as exc:
        raise DataError(path, None, f"not valid UTF-8 ({exc.reason})") from None
    except (OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise DataError(path, None, "file not found") from None
        raise DataError(path, None, f"unreadable ({exc})") from None


def _string_field(path: Path, number: int, obj: Mapping[str, object], name: str) -> str:
    value = obj.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(path, number, f"field {name!r} must be a string")
    return value


def _id_field(path: Path, number: int, obj: Mapping[str, object]) -> str:
    if "_id" not in obj:
        raise DataError(path, number, "missing '_id'")
    value = obj["_id"]
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise DataError(path, number, "'_id' must be a non-empty string")
    return value


def _iter_corpus_lines(path: Path) -> Iterator[tuple[int, int, Document]]:
    """(byte offset, byte length, document) of each document line, ids checked as it goes."""
    seen: set[str] = set()
    for number, start, length, obj in _iter_json_lines(path):
        doc_id = _id_field(path, number, obj)
        if doc_id in seen:
            raise DataError(path, number, f"duplicate '_id' {doc_id!r}")
        seen.add(doc_id)
        title = _string_field(path, number, obj, "title")
        yield start, length, Document(doc_id, title, _string_field(path, number, obj, "text"))


def iter_corpus(path: Path) -> Iterator[Document]:
    """Stream documents from corpus.jsonl or corpus.jsonl.gz, checking ids as it goes."""
    for _start, _length, doc in _iter_corpus_lines(path):
        yield doc


def scan_corpus(path: Path, documents: Iterator[Document] | None = None) -> CorpusScan:
    """Check a corpus file line by line, keeping only its ids and fingerprint (``documents``:
    the file's documents, e.g. ``iter_corpus(path)`` with progress reports around it)."""
    ids: set[str] = set()
    digest = CorpusDigest()
    for doc in iter_corpus(path) if documents is None else documents:
        ids.add(doc.id)
        digest.update(doc)
    if not ids:
        raise DataError(path, None, "corpus is empty")
    return CorpusScan(frozenset(ids), digest.hexdigest())


def load_corpus(path: Path) -> Corpus:
    """The corpus of ``path``: an uncompressed file is read back for texts when they are needed
    (ids, positions and 12 bytes of offsets a document in memory), a gzip file is held whole."""
    if path.suffix == ".gz":
        corpus = Corpus.from_documents(iter_corpus(path))
    else:
        ids: list[str] = []
        positions: dict[str, int] = {}
        starts: list[int] = []
        lengths: list[int] = []
        digest = CorpusDigest()
        for start, length, doc in _iter_corpus_lines(path):
            positions[doc.id] = len(ids)
            ids.append(doc.id)
            starts.append(start)
            lengths.append(length)
            digest.update(doc)
        offsets = np.asarray(starts, dtype=np.int64)
        texts = FileTexts(path, offsets, np.asarray(lengths, dtype=np.uint32))
        corpus = Corpus(tuple(ids), digest.hexdigest(), texts, positions)
    if len(corpus) == 0:
        raise DataError(path, None, "corpus is empty")
    return corpus


def load_queries(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for number, obj in _iter_json_objects(path):
        query_id = _id_field(path, number, obj)
        if query_id in queries:
            raise DataError(path, number, f"duplicate '_id' {query_id!r}")
        text = _string_field(path, number, obj, "text")
        if not text.strip():
            raise DataError(path, number, "query 'text' is empty")
        queries[query_id] = text
    return queries


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    """Read a BEIR qrels TSV (header ``query-id corpus-id score``)."""
    qrels: dict[str, dict[str, int]] = {}
    try:
        with path.open("r", encoding="utf-8") as handle:
            header = handle.readline().rstrip("\r\n").split("\t")
            if tuple(h.strip() for h in header) != QRELS_HEADER:
                raise DataError(path, 1, f"expected header {_HEADER_TEXT!r}")
            for number, line in enumerate(handle, start=2):
                if not line.strip():
                    continue
                parts = line.rstrip("\r\n").split("\t")
                if len(parts) != 3:
                    raise DataError(
                        path, number, f"expected 3 tab-separated columns, got {len(parts)}"
                    )
                query_id, doc_id, score = (p.strip() for p in parts)
                try:
                    grade = int(score)
                except ValueError:
                    raise DataError(path, number, f"score {score!r} is not an integer") from None
                if not query_id or not doc_id:
                    raise DataError(path, number, "empty query-id or corpus-id")
                judged = qrels.setdefault(query_id, {})
                if judged.get(doc_id, grade) != grade:
                    raise DataError(
                        path,
                        number,
                        f"({query_id!r}, {doc_id!r}) judged again with another score "
                        f"({grade} after {judged[doc_id]})",
                    )
                judged[doc_id] = grade
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(path, None, f"not valid UTF-8 ({exc.reason})") from None
    return qrels


def find_corpus_file(folder: Path) -> Path:
    for name in ("corpus.jsonl", "corpus.jsonl.gz"):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise DataError(folder, None, "no corpus.jsonl or corpus.jsonl.gz in this folder")


def available_splits(folder: Path) -> list[str]:
    return [s for s in SPLITS if (folder / "qrels" / f"{s}.tsv").is_file()]


@dataclass(frozen=True)
class BeirSplit:
    """A corpus with one split's queries (those named in the split's qrels) and qrels."""

    name: str
    corpus: Corpus
    queries: Mapping[str, str]
    qrels: Qrels


def check_qrels(
    path: Path, qrels: Qrels, queries: Mapping[str, str], corpus: Corpus | CorpusScan
) -> None:
    """Every qrels query must be in queries.jsonl and every judged doc in the corpus."""
    for query_id, judged in qrels.items():
        if query_id not in queries:
            raise DataError(path, None, f"query-id {query_id!r} is not in queries.jsonl")
        for doc_id in judged:
            if doc_id not in corpus:
                raise DataError(
                    path, None, f"corpus-id {doc_id!r} (query {query_id!r}) is not in the corpus"
                )


def load_split(folder: Path, split: str, corpus: Corpus | None = None) -> BeirSplit:
    """Load ``folder``'s corpus (unless given), then the queries and qrels of ``split``."""
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        have = ", ".join(available_splits(folder)) or "none"
        raise DataError(qrels_path, None, f"no qrels for split {split!r} (available: {have})")
    corpus = corpus if corpus is not None else load_corpus(find_corpus_file(folder))
    all_queries = load_queries(folder / "queries.jsonl")
    qrels = load_qrels(qrels_path)
    check_qrels(qrels_path, qrels, all_queries, corpus)
    queries = {qid: all_queries[qid] for qid in qrels}
    return BeirSplit(split, corpus, queries, qrels)
