"""A small, consistent slice of a BEIR dataset: the first train and test queries, every document
they judge, and some unjudged others, for smoke runs (bench.deploy, bench.gpu_check --dry-run)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardneg.core.beir import find_corpus_file, iter_corpus, load_qrels, load_queries


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


@dataclass(frozen=True)
class BeirSlice:
    corpus: bytes  # corpus.jsonl
    queries: bytes  # queries.jsonl
    qrels: dict[str, bytes]  # split -> qrels TSV with its header

    def write(self, folder: Path) -> Path:
        """The slice as a BEIR folder."""
        (folder / "qrels").mkdir(parents=True, exist_ok=True)
        (folder / "corpus.jsonl").write_bytes(self.corpus)
        (folder / "queries.jsonl").write_bytes(self.queries)
        for split, tsv in self.qrels.items():
            (folder / "qrels" / f"{split}.tsv").write_bytes(tsv)
        return folder


def beir_slice(
    folder: Path, train_queries: int, test_queries: int, other_docs: int, text_chars: int = 600
) -> BeirSlice:
    qrels = {s: load_qrels(folder / "qrels" / f"{s}.tsv") for s in ("train", "test")}
    chosen = {
        "train": dict(sorted(qrels["train"].items())[:train_queries]),
        "test": dict(sorted(qrels["test"].items())[:test_queries]),
    }
    judged = {doc for split in chosen.values() for docs in split.values() for doc in docs}
    docs, others = [], 0
    for doc in iter_corpus(find_corpus_file(folder)):
        if doc.id in judged or others < other_docs:
            others += doc.id not in judged
            docs.append({"_id": doc.id, "title": doc.title, "text": doc.text[:text_chars]})
    queries = load_queries(folder / "queries.jsonl")
    rows = [{"_id": q, "text": queries[q]} for split in chosen.values() for q in split]
    tsv = {
        split: (
            "query-id\tcorpus-id\tscore\n"
            + "".join(f"{q}\t{d}\t{g}\n" for q, docs in pairs.items() for d, g in docs.items())
        ).encode()
        for split, pairs in chosen.items()
    }
    return BeirSlice(jsonl(docs), jsonl(rows), tsv)
