"""The experiment's own BEIR folder: the source corpus and test qrels (linked, never read here),
and the training queries cut into disjoint, seeded roles.

Splits written under ``qrels/`` (what each one is for is also said in the report):

- ``train``: the budget, the training queries every arm mines negatives for and trains on;
- ``val``: training queries held out for validation (training curves, checkpoint choice);
  never in the budget, never the reranker's;
- ``reranker``: other training queries, used only to train the cross-encoder when the user
  gives none (so it never sees the budget's or validation's positives);
- ``probe``: the false-negative probe (:mod:`hardneg.miners.probe`): budget queries with at
  least two positives, one of them hidden (``probe-hidden.json`` says which);
- ``test``: a link to the source's test qrels. Only the final scoring stages read it.

The training queries are the source's train split (``queries="human"``) or LLM-written queries
for sampled passages, round-trip filtered (``queries="generated"``, also the fallback when the
source has no train split).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from hardneg.core.atomic import atomic_path
from hardneg.core.beir import DataError, find_corpus_file, load_qrels, load_queries
from hardneg.miners.probe import HiddenPositives, hide_positives

logger = logging.getLogger(__name__)

QRELS_HEADER = "query-id\tcorpus-id\tscore"
MARKER = "experiment-data.json"
PROBE_FILE = "probe-hidden.json"
QuerySource = Literal["human", "generated"]
QUERY_SOURCES: tuple[QuerySource, ...] = ("human", "generated")


@dataclass(frozen=True)
class Roles:
    """Disjoint query ids per role, each sorted."""

    train: list[str]
    val: list[str]
    reranker: list[str]


@dataclass(frozen=True)
class ExperimentData:
    folder: Path
    train_queries: int
    val_queries: int
    reranker_queries: int
    probe_queries: int
    generated: bool  # the training queries were written by the LLM
    available_queries: int  # training queries with a positive before the roles were cut

    @classmethod
    def read(cls, folder: Path) -> ExperimentData:
        info = json.loads((folder / MARKER).read_text())
        return cls(folder=folder, **{k: info[k] for k in _COUNTS})


_COUNTS = (
    "train_queries",
    "val_queries",
    "reranker_queries",
    "probe_queries",
    "generated",
    "available_queries",
)


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


def split_roles(
    query_ids: list[str], budget: int | None, val: int, held_out: int, seed: int
) -> Roles:
    """Disjoint roles from one seeded shuffle: validation first (at most a fifth of the
    queries), then the budget, then the reranker's queries from what is left. When the rest
    cannot fill the budget (few queries, e.g. LLM-written ones), budget and reranker share it
    in proportion to what each asked for, so a cross-encoder can still be trained here."""
    order = list(query_ids)
    random.Random(seed).shuffle(order)
    val_size = min(val, len(order) // 5)
    val_ids, rest = order[:val_size], order[val_size:]
    size = len(rest) if budget is None else min(budget, len(rest))
    if budget is not None and held_out and len(rest) < budget:
        size = max(1, round(len(rest) * budget / (budget + held_out)))
    chosen, rest = rest[:size], rest[size:]
    return Roles(sorted(chosen), sorted(val_ids), sorted(rest[:held_out]))


@dataclass(frozen=True)
class _Training:
    """The training queries' qrels and texts, and where they came from."""

    qrels: dict[str, dict[str, int]]
    texts: dict[str, str]
    path: Path  # their qrels file (named in errors)
    generated: bool  # written by the LLM


def _training_queries(
    source: Path,
    source_queries: dict[str, str],
    human: dict[str, dict[str, int]] | None,
    queries: QuerySource,
    generate: Callable[[], Path],
) -> _Training:
    """The source's train split (``human``), or generated queries when asked for or missing."""
    if queries == "human" and human is not None:
        return _Training(human, source_queries, source / "qrels" / "train.tsv", False)
    if human is None:
        logger.info("%s has no train split: generating training queries", source)
    folder = generate()
    texts = load_queries(folder / "queries.jsonl")
    clash = sorted(set(texts) & set(source_queries))
    if clash:
        raise DataError(folder, None, f"generated query ids clash: {clash[:3]}")
    path = folder / "qrels" / "train.tsv"
    return _Training(load_qrels(path), texts, path, True)


def _write_folder(
    temp: Path,
    source: Path,
    rows: Mapping[str, str],
    train: Mapping[str, Mapping[str, int]],
    roles: Roles,
    probe: HiddenPositives,
) -> None:
    """The folder's files: corpus and test qrels linked, the queries, one qrels file per role."""
    (temp / "qrels").mkdir(parents=True)
    corpus = find_corpus_file(source)
    _link_or_copy(corpus, temp / corpus.name)
    _link_or_copy(source / "qrels" / "test.tsv", temp / "qrels" / "test.tsv")
    (temp / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in rows.items()),
        encoding="utf-8",
    )
    for name, ids in asdict(roles).items():
        if ids:
            (temp / "qrels" / f"{name}.tsv").write_text(_qrels_text(train, ids), encoding="utf-8")
    if probe.hidden:
        (temp / "qrels" / "probe.tsv").write_text(
            _qrels_text(probe.qrels, sorted(probe.qrels)), encoding="utf-8"
        )
    (temp / PROBE_FILE).write_text(json.dumps(probe.hidden, indent=2), encoding="utf-8")


def prepare_data(
    source: Path,
    output: Path,
    counts: Mapping[str, int | None],
    seed: int,
    queries: QuerySource,
    generate: Callable[[], Path],
) -> ExperimentData:
    """Write (once) the experiment's BEIR folder at ``output``; a finished one is reused.

    ``counts`` holds ``train_queries`` (None: all), ``val_queries`` and ``reranker_queries``.
    ``generate()`` is called for generated queries (asked for, or no train split): it returns a
    BEIR folder of LLM-written queries with ``qrels/train.tsv`` over the same corpus.
    """
    if (output / MARKER).is_file():
        return ExperimentData.read(output)
    test_path = source / "qrels" / "test.tsv"
    if not test_path.is_file():
        raise DataError(test_path, None, "the experiment needs a test split to score methods on")
    source_queries = load_queries(source / "queries.jsonl")
    human_path = source / "qrels" / "train.tsv"
    human = load_qrels(human_path) if human_path.is_file() else None
    training = _training_queries(source, source_queries, human, queries, generate)
    available = _positive_queries(training.qrels)
    roles = split_roles(
        available, counts["train_queries"], counts["val_queries"] or 0,
        counts["reranker_queries"] or 0, seed,
    )  # fmt: skip
    if not roles.train:
        raise DataError(training.path, None, "no training query has a positive")
    # the probe's queries are never ones a cross-encoder trained here has seen: generated
    # training queries are probed with the human ones, if any
    if training.generated and human is not None:
        probe = hide_positives(human, seed)
    else:
        probe = hide_positives(training.qrels, seed, roles.train)
    chosen = [*roles.train, *roles.val, *roles.reranker]
    rows = source_queries | {q: training.texts[q] for q in chosen}
    info: dict[str, object] = {
        "source": str(source),
        "queries": "generated" if training.generated else "human",
        "train_queries": len(roles.train),
        "val_queries": len(roles.val),
        "reranker_queries": len(roles.reranker),
        "probe_queries": len(probe.hidden),
        "generated": training.generated,
        "available_queries": len(available),
        "seed": seed,
    }
    with atomic_path(output) as temp:
        _write_folder(temp, source, rows, training.qrels, roles, probe)
        (temp / MARKER).write_text(json.dumps(info, indent=2), encoding="utf-8")
    logger.info(
        "experiment data: %d budget, %d validation, %d reranker, %d probe queries%s",
        len(roles.train),
        len(roles.val),
        len(roles.reranker),
        len(probe.hidden),
        " (LLM-generated)" if training.generated else "",
    )
    return ExperimentData.read(output)


def hidden_positives(folder: Path) -> dict[str, str]:
    """The probe's hidden positive per query (empty when no query had two positives)."""
    path = folder / PROBE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
