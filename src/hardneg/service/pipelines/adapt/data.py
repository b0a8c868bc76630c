"""The adapt run's BEIR folder: the corpus (linked), the generated queries, and their qrels cut
into ``train`` and a validation slice (``dev``) by passage.

The cut is by passage, not by query: the several queries written for one passage all land on
the same side, so validation never asks for a passage a training query was written for (that
would reward memorising the passage, not retrieving). The source's own qrels (its test split,
if any) are never linked here: nothing in an adapt run can read them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hardneg.core.atomic import atomic_path
from hardneg.core.beir import find_corpus_file
from hardneg.miners.llm.queries import GeneratedQuery

TRAIN_SPLIT = "train"
# the trainers track the best checkpoint only on a split core.beir knows (SPLITS): "dev"
VAL_SPLIT = "dev"


@dataclass(frozen=True)
class QuerySplit:
    train: tuple[GeneratedQuery, ...]
    val: tuple[GeneratedQuery, ...]
    train_passages: int
    val_passages: int


def split_by_passage(queries: Sequence[GeneratedQuery], val_share: float, seed: int) -> QuerySplit:
    """Seeded cut of the passages (a query goes with the first passage that wrote it); at least
    one passage on each side when there are two or more."""
    passages = sorted({q.doc_ids[0] for q in queries})
    random.Random(seed).shuffle(passages)
    size = round(val_share * len(passages))
    if len(passages) >= 2:
        size = min(max(size, 1), len(passages) - 1)
    val_passages = set(passages[:size])
    train = tuple(q for q in queries if q.doc_ids[0] not in val_passages)
    val = tuple(q for q in queries if q.doc_ids[0] in val_passages)
    return QuerySplit(train, val, len(passages) - size, size)


def _qrels(queries: Sequence[GeneratedQuery]) -> str:
    lines = ["query-id\tcorpus-id\tscore"]
    lines.extend(f"{q.query_id}\t{doc}\t1" for q in queries for doc in q.doc_ids)
    return "\n".join(lines) + "\n"


def write_adapt_data(folder: Path, source: Path, split: QuerySplit) -> Path:
    """Write ``folder`` whole (corpus hard-linked or copied, queries, train/val qrels)."""
    corpus = find_corpus_file(source)
    with atomic_path(folder) as temp:
        (temp / "qrels").mkdir(parents=True)
        try:
            (temp / corpus.name).hardlink_to(corpus)
        except OSError:
            (temp / corpus.name).write_bytes(corpus.read_bytes())
        rows = [
            {"_id": q.query_id, "text": q.text, "metadata": {"source": list(q.doc_ids)}}
            for q in (*split.train, *split.val)
        ]
        (temp / "queries.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
        )
        (temp / "qrels" / f"{TRAIN_SPLIT}.tsv").write_text(_qrels(split.train), encoding="utf-8")
        (temp / "qrels" / f"{VAL_SPLIT}.tsv").write_text(_qrels(split.val), encoding="utf-8")
    return folder
