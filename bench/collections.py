"""Classic test collections in the SMART layout, converted to BEIR folders.

    python -m bench.collections cranfield --raw DIR --output /work/data/collections/cranfield
    python -m bench.collections cisi --raw DIR --output /work/data/collections/cisi

The raw files are the public distributions of the collections (Cornell SMART / Glasgow IR
group; mirrored in many course repositories on GitHub):

- **Cranfield** (aeronautics, 1,400 abstracts, 225 queries): ``cran.all.1400``, ``cran.qry``,
  ``cranqrel`` (columns: query number, document number, Cleverdon's relevance code);
- **CISI** (library and information science, 1,460 abstracts, 112 queries of which 76 are
  judged): ``CISI.ALL``, ``CISI.QRY``, ``CISI.REL`` (query, document, two unused columns).

A SMART file is a run of records, each opened by ``.I <id>`` and made of fields opened by a
line ``.<letter>`` (``.T`` title, ``.A`` authors, ``.B`` source, ``.W`` text, ``.X``
cross-references). What the converter decides, and says in ``collection.json``:

- documents with neither title nor text are dropped (Cranfield 471 and 995), and so are the
  judgments that name them; a text that starts by repeating its title loses the repeat
  (Cranfield's do), so the BEIR "title + text" input does not see the title twice;
- Cranfield's query records are numbered with gaps (1, 2, 4, 8, ...) while its qrels number the
  queries 1..225 in file order: the query ids written are those ordinals;
- Cranfield's codes are Cleverdon's (1 = a complete answer ... 4 = minimum interest): the grade
  written is ``5 - code`` (4 best, 1 least); code -1 (one line per query, not a relevance code)
  is dropped. CISI's judgments are binary: grade 1.

Every judged query lands in ``qrels/test.tsv``: these collections have no training split.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hardneg.core.atomic import atomic_path
from hardneg.core.beir import DataError

logger = logging.getLogger("bench.collections")

_FIELD = re.compile(r"^\.([A-Z])\b\s*(.*)$")
_RECORD = re.compile(r"^\.I\s+(\S+)\s*$")


@dataclass
class Record:
    """One SMART record: its ``.I`` id, the line it starts on, and its fields' texts."""

    id: str
    line: int
    fields: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str:
        return self.fields.get(name, "")


def read_smart(path: Path) -> Iterator[Record]:
    """Records of a SMART file; text before the first ``.I`` raises DataError naming the line."""
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    record: Record | None = None
    current: str | None = None
    parts: dict[str, list[str]] = {}

    def finish() -> Record | None:
        if record is None:
            return None
        record.fields = {name: " ".join(" ".join(lines).split()) for name, lines in parts.items()}
        return record

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        opened = _RECORD.match(line)
        if opened:
            done = finish()
            if done is not None:
                yield done
            record, current, parts = Record(opened.group(1), number), None, {}
            continue
        marker = _FIELD.match(line)
        if marker and record is not None:
            current = marker.group(1)
            parts.setdefault(current, [])
            if marker.group(2):
                parts[current].append(marker.group(2))
            continue
        if not line.strip():
            continue
        if record is None:
            raise DataError(path, number, "text before the first '.I' record")
        if current is None:
            raise DataError(path, number, "text before any field marker ('.T', '.W', ...)")
        parts[current].append(line.strip())
    done = finish()
    if done is not None:
        yield done


def strip_repeated_title(title: str, text: str) -> str:
    """``text`` without a leading copy of ``title`` (compared word for word, case-blind)."""
    title_words, text_words = title.lower().split(), text.split()
    n = len(title_words)
    if n and [w.lower() for w in text_words[:n]] == title_words:
        return " ".join(text_words[n:])
    return text


Qrels = dict[str, dict[str, int]]


@dataclass(frozen=True)
class Converted:
    documents: list[dict[str, str]]
    queries: list[dict[str, str]]
    qrels: Qrels
    notes: dict[str, int]


def _qrel_rows(path: Path, min_columns: int) -> Iterator[tuple[int, list[str]]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < min_columns:
            raise DataError(path, number, f"expected {min_columns} columns, got {len(parts)}")
        yield number, parts


def _documents(path: Path, notes: dict[str, int]) -> list[dict[str, str]]:
    documents = []
    seen: set[str] = set()
    for record in read_smart(path):
        if record.id in seen:
            raise DataError(path, record.line, f"duplicate document id {record.id!r}")
        seen.add(record.id)
        title = record.get("T")
        text = strip_repeated_title(title, record.get("W"))
        if not title and not text:
            notes["empty_documents_dropped"] = notes.get("empty_documents_dropped", 0) + 1
            continue
        documents.append({"_id": record.id, "title": title, "text": text})
    return documents


def _keep_known(qrels: Qrels, doc_ids: set[str], notes: dict[str, int]) -> Qrels:
    kept: Qrels = {}
    for query_id, judged in qrels.items():
        known = {d: g for d, g in judged.items() if d in doc_ids}
        notes["judgments_on_dropped_documents"] = (
            notes.get("judgments_on_dropped_documents", 0) + len(judged) - len(known)
        )
        if known:
            kept[query_id] = known
    return kept


def convert_cranfield(raw: Path) -> Converted:
    notes: dict[str, int] = {}
    documents = _documents(raw / "cran.all.1400", notes)
    queries = []
    for ordinal, record in enumerate(read_smart(raw / "cran.qry"), start=1):
        text = record.get("W")
        if not text:
            raise DataError(raw / "cran.qry", record.line, f"query {record.id} has no '.W' text")
        queries.append({"_id": str(ordinal), "text": text})
    qrels: Qrels = {}
    for number, parts in _qrel_rows(raw / "cranqrel", 3):
        query_id, doc_id, code = parts[0], parts[1], parts[2]
        if code == "-1":
            notes["code_minus_one_dropped"] = notes.get("code_minus_one_dropped", 0) + 1
            continue
        if code not in {"1", "2", "3", "4"}:
            raise DataError(raw / "cranqrel", number, f"relevance code {code!r} is not 1-4 or -1")
        qrels.setdefault(query_id, {})[doc_id] = 5 - int(code)
    return Converted(documents, queries, _keep_known(qrels, _ids(documents), notes), notes)


def convert_cisi(raw: Path) -> Converted:
    notes: dict[str, int] = {}
    documents = _documents(raw / "CISI.ALL", notes)
    queries = []
    for record in read_smart(raw / "CISI.QRY"):
        text = record.get("W")
        if not text:
            raise DataError(raw / "CISI.QRY", record.line, f"query {record.id} has no '.W' text")
        queries.append({"_id": record.id, "text": text})
    qrels: Qrels = {}
    for _, parts in _qrel_rows(raw / "CISI.REL", 2):
        qrels.setdefault(parts[0], {})[parts[1]] = 1
    return Converted(documents, queries, _keep_known(qrels, _ids(documents), notes), notes)


def _ids(documents: list[dict[str, str]]) -> set[str]:
    return {d["_id"] for d in documents}


CONVERTERS: dict[str, tuple[Callable[[Path], Converted], tuple[str, ...]]] = {
    "cranfield": (convert_cranfield, ("cran.all.1400", "cran.qry", "cranqrel")),
    "cisi": (convert_cisi, ("CISI.ALL", "CISI.QRY", "CISI.REL")),
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _jsonl(rows: list[dict[str, str]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write_beir(name: str, raw: Path, output: Path) -> dict[str, object]:
    """Convert collection ``name`` from ``raw`` into a BEIR folder at ``output`` (atomically)."""
    convert, files = CONVERTERS[name]
    result = convert(raw)
    query_ids = {q["_id"] for q in result.queries}
    unknown = sorted(set(result.qrels) - query_ids)
    if unknown:
        raise DataError(raw, None, f"qrels name queries that do not exist: {unknown[:5]}")
    summary: dict[str, object] = {
        "collection": name,
        "documents": len(result.documents),
        "queries": len(result.queries),
        "judged_queries": len(result.qrels),
        "judgments": sum(len(j) for j in result.qrels.values()),
        "notes": result.notes,
        "raw_sha256": {f: _sha256(raw / f) for f in files},
    }
    with atomic_path(output) as temp:
        (temp / "qrels").mkdir(parents=True)
        (temp / "corpus.jsonl").write_text(_jsonl(result.documents), encoding="utf-8")
        (temp / "queries.jsonl").write_text(_jsonl(result.queries), encoding="utf-8")
        lines = ["query-id\tcorpus-id\tscore"]
        for query_id, judged in result.qrels.items():
            lines.extend(f"{query_id}\t{doc}\t{grade}" for doc, grade in judged.items())
        (temp / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (temp / "collection.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> Mapping[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(CONVERTERS))
    parser.add_argument("--raw", type=Path, required=True, help="folder of the raw files")
    parser.add_argument("--output", type=Path, required=True, help="BEIR folder to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = write_beir(args.name, args.raw, args.output)
    logger.info("%s -> %s: %s", args.name, args.output, json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
