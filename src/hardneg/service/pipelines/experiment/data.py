"""The experiment's own BEIR folder: the source corpus (linked, not copied), its test split, and
the training budget cut from the train split (or from LLM-generated queries when there is none).

Splits written under ``qrels/``:

- ``test``: the source's test qrels, unchanged (every method is scored on it);
- ``train``: the budget, a seeded sample of training queries that have a positive, which every
  negative source mines and trains on;
- ``reranker``: other training queries, disjoint from the budget, used only to train the
  cross-encoder when the user gives none (so it never sees the budget's positives).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hardneg.core.atomic import atomic_path
from hardneg.core.beir import DataError, find_corpus_file, load_qrels, load_queries

logger = logging.getLogger(__name__)

QRELS_HEADER = "query-id\tcorpus-id\tscore"
MARKER = "experiment-data.json"


@dataclass(frozen=True)
class ExperimentData:
    folder: Path
    train_queries: int
    reranker_queries: int
    generated: bool  # the training queries were written by the LLM


def _positive_queries(qrels: Mapping[str, Mapping[str, int]]) -> list[str]:
    return sorted(q for q, judged in qrels.items() if any(g > 0 for g in judged.values()))


def _qrels_text(qrels: Mapping[str, Mapping[str, int]], query_ids: list[str]) -> str:
    lines = [QRELS_HEADER]
    for query_id in query_ids:
        lines.extend(f"{query_id}\t{doc}\t{grade}" for doc, grade in qrels[query_id].items())
    return "\n".join(lines) + "\n"


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        target.symlink_to(source.resolve())
    except OSError:
        shutil.copyfile(source, target)


def split_budget(
    query_ids: list[str], budget: int | None, held_out: int, seed: int
) -> tuple[list[str], list[str]]:
    """(budget queries, held-out queries for the reranker), disjoint, from a seeded shuffle."""
    order = list(query_ids)
    random.Random(seed).shuffle(order)
    size = len(order) if budget is None else min(budget, len(order))
    chosen, rest = order[:size], order[size:]
    return sorted(chosen), sorted(rest[:held_out])


def prepare_data(
    source: Path,
    output: Path,
    budget: int | None,
    held_out: int,
    seed: int,
    generate: Callable[[], Path],
) -> ExperimentData:
    """Write (once) the experiment's BEIR folder at ``output``; a finished one is reused.

    ``generate()`` is called only when ``source`` has no train split: it returns a BEIR folder of
    LLM-written queries with ``qrels/train.tsv`` over the same corpus.
    """
    marker = output / MARKER
    if marker.is_file():
        info = json.loads(marker.read_text())
        return ExperimentData(
            output, info["train_queries"], info["reranker_queries"], info["generated"]
        )
    test_path = source / "qrels" / "test.tsv"
    if not test_path.is_file():
        raise DataError(test_path, None, "the experiment needs a test split to score methods on")
    queries = load_queries(source / "queries.jsonl")
    test = load_qrels(test_path)
    train_folder, generated = source, False
    if not (source / "qrels" / "train.tsv").is_file():
        logger.info("%s has no train split: generating training queries with the LLM", source)
        train_folder, generated = generate(), True
    train = load_qrels(train_folder / "qrels" / "train.tsv")
    train_texts = load_queries(train_folder / "queries.jsonl") if generated else queries
    chosen, held = split_budget(_positive_queries(train), budget, held_out, seed)
    if not chosen:
        raise DataError(
            train_folder / "qrels" / "train.tsv", None, "no training query has a positive"
        )
    clash = set(chosen + held) & set(test) if generated else set()
    if clash:
        raise DataError(
            train_folder, None, f"generated query ids clash with test ids: {sorted(clash)[:3]}"
        )
    rows = {q: queries[q] for q in test} | {q: train_texts[q] for q in chosen + held}
    with atomic_path(output) as temp:
        (temp / "qrels").mkdir(parents=True)
        corpus = find_corpus_file(source)
        _link_or_copy(corpus, temp / corpus.name)
        (temp / "queries.jsonl").write_text(
            "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in rows.items()),
            encoding="utf-8",
        )
        (temp / "qrels" / "test.tsv").write_text(_qrels_text(test, sorted(test)), encoding="utf-8")
        (temp / "qrels" / "train.tsv").write_text(_qrels_text(train, chosen), encoding="utf-8")
        if held:
            (temp / "qrels" / "reranker.tsv").write_text(_qrels_text(train, held), encoding="utf-8")
        info = {
            "source": str(source),
            "train_queries": len(chosen),
            "reranker_queries": len(held),
            "generated": generated,
            "seed": seed,
        }
        (temp / MARKER).write_text(json.dumps(info, indent=2), encoding="utf-8")
    logger.info(
        "experiment data: %d budget queries, %d held out for the reranker%s",
        len(chosen),
        len(held),
        " (LLM-generated)" if generated else "",
    )
    return ExperimentData(output, len(chosen), len(held), generated)
