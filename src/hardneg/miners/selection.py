"""Turn cached candidate lists into mined rows by running the shared filters per query."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from hardneg.core.beir import BeirSplit
from hardneg.core.negatives import MinedQuery
from hardneg.core.progress import Progress, no_progress
from hardneg.miners.candidates import CandidateLists
from hardneg.miners.filters import (
    Candidate,
    FilterConfig,
    QueryPool,
    Selection,
    select_negatives,
    text_key,
)
from hardneg.miners.job import FilterReport, MinedRun, merge_counts

logger = logging.getLogger(__name__)

_PROGRESS_EVERY = 1000


class CorpusKeys:
    """``text_key`` of corpus rows, computed once per row and only for rows that are asked for."""

    def __init__(self, split: BeirSplit) -> None:
        self._corpus = split.corpus
        self._keys: dict[int, str] = {}

    def __call__(self, position: int) -> str:
        key = self._keys.get(position)
        if key is None:
            key = text_key(self._corpus.document(position).full_text)
            self._keys[position] = key
        return key


def query_pool(split: BeirSplit, lists: CandidateLists, row: int, keys: CorpusKeys) -> QueryPool:
    """Query ``row`` of ``lists`` as the filters see it."""
    corpus = split.corpus
    query_id = lists.query_ids[row]
    positive_ids = lists.positive_ids[row]
    return QueryPool(
        query_id=query_id,
        query_key=text_key(split.queries[query_id]),
        positive_scores=dict(zip(positive_ids, lists.positive_scores[row], strict=True)),
        positive_keys=frozenset(keys(corpus.position(d)) for d in positive_ids),
        candidates=tuple(
            Candidate(corpus.ids[p], s, keys(p))
            for p, s in zip(lists.positions[row].tolist(), lists.scores[row].tolist(), strict=True)
            if p >= 0
        ),
        judged_ids=frozenset(split.qrels.get(query_id, {})),
    )


def mined_row(split: BeirSplit, pool: QueryPool, selection: Selection, method: str) -> MinedQuery:
    corpus = split.corpus

    def text(doc_id: str) -> str:
        return corpus.document(corpus.position(doc_id)).full_text

    positive_ids = tuple(pool.positive_scores)
    return MinedQuery(
        query_id=pool.query_id,
        query=split.queries[pool.query_id],
        positive_ids=positive_ids,
        positives=tuple(text(d) for d in positive_ids),
        positive_scores=tuple(pool.positive_scores[d] for d in positive_ids),
        negative_ids=tuple(c.doc_id for c in selection.negatives),
        negatives=tuple(text(c.doc_id) for c in selection.negatives),
        negative_scores=tuple(c.score for c in selection.negatives),
        method=method,
    )


def select_from_candidates(
    split: BeirSplit,
    lists: CandidateLists,
    config: FilterConfig,
    method: str,
    provenance: Mapping[str, object] | None = None,
    progress: Progress = no_progress,
) -> MinedRun:
    """Filter every query's candidates; queries left short or empty are counted, never padded."""
    max_positives = max((len(p) for p in lists.positive_ids), default=1) or 1
    rows: list[MinedQuery] = []
    removed: list[Mapping[str, int]] = []
    skipped: dict[str, list[str]] = {}
    short: list[str] = []
    total = len(lists.query_ids)
    keys = CorpusKeys(split)
    for row, query_id in enumerate(lists.query_ids):
        if row % _PROGRESS_EVERY == 0:
            progress(row, total, "filtering")
        if not lists.positive_ids[row]:
            skipped.setdefault("no_positive", []).append(query_id)
            continue
        pool = query_pool(split, lists, row, keys)
        if not pool.candidates:
            skipped.setdefault("no_candidates", []).append(query_id)
            continue
        selection = select_negatives(pool, config, max_positives)
        removed.append(selection.removed)
        found = len(selection.negatives)
        if found < config.min_negatives:
            skipped.setdefault("too_few_negatives", []).append(query_id)
            continue
        if found < config.num_negatives:
            short.append(query_id)
        rows.append(mined_row(split, pool, selection, method))
    progress(total, total, "filtering")
    report = FilterReport(
        num_queries=total,
        num_negatives=config.num_negatives,
        full=len(rows) - len(short),
        short=len(short),
        skipped={reason: len(ids) for reason, ids in skipped.items()},
        removed=merge_counts(removed),
        skipped_ids={reason: tuple(ids) for reason, ids in skipped.items()},
        short_ids=tuple(short),
    )
    if report.skipped or report.short:
        logger.info(
            "%s: %d queries short of %d negatives, skipped %s",
            method,
            report.short,
            config.num_negatives,
            dict(report.skipped) or "none",
        )
    return MinedRun(method, tuple(rows), report, dict(provenance or {}))
