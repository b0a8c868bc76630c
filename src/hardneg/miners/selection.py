"""Turn cached candidate lists into mined rows by running the shared filters on all queries at once.

The filters are those described in ``miners.filters``; this is their one production
implementation, as array operations over the (queries x depth) candidate lists, for every method
(the ``llm`` method's generated texts included). ``tests/filters_reference.py`` runs them one
query at a time, readably; tests/test_selection_batch.py checks both give the same negatives in
the same order and the same removal counts on random pools and every option.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hardneg.core.beir import BeirSplit, Corpus
from hardneg.core.negatives import MinedQuery
from hardneg.core.progress import Progress, no_progress
from hardneg.miners.candidates import CandidateLists
from hardneg.miners.filters import (
    PREFIX_BYTES,
    REMOVAL_REASONS,
    FilterConfig,
    normalize_text,
    query_rng,
    squeezed_prefix,
)
from hardneg.miners.job import FilterReport, MinedRun, MiningJob

logger = logging.getLogger(__name__)

Mask = npt.NDArray[np.bool_]
Rows = npt.NDArray[np.int64]


class CorpusTexts(dict[int, str]):
    """``full_text`` of corpus rows, each built once and only when asked for.

    ``texts[row]`` keeps the text (the output rows' texts, shared between queries); ``peek``
    does not, so reading every candidate once (dedupe keys) holds no second copy of the corpus.
    """

    def __init__(self, corpus: Corpus) -> None:
        super().__init__()
        self.corpus = corpus

    def __missing__(self, row: int) -> str:
        text = self[row] = self.corpus.document(row).full_text
        return text

    def peek(self, row: int) -> str:
        """The row's text, kept only if it already was."""
        text = self.get(row)
        return self.corpus.document(row).full_text if text is None else text


def text_classes(
    texts: CorpusTexts, rows: Rows, queries: Sequence[str]
) -> tuple[dict[int, int], list[int]]:
    """Dedupe identity of corpus ``rows`` and of ``queries``: equal ids <=> equal normalised text.

    Returns (corpus row -> class id, one class id per query; -1 where no listed row has the
    query's text). Rows are first grouped by ``squeezed_prefix`` (cheap: a text's first
    characters); ``normalize_text`` only splits the groups that hold several rows or whose key
    is a query's.
    """
    row_list = rows.tolist()
    keys = [squeezed_prefix(texts.peek(row)) for row in row_list]
    owner: dict[bytes, int] = {}  # key -> the first row with it
    firsts = list(map(owner.setdefault, keys, row_list))
    normalised = [normalize_text(query) for query in queries]
    # a normalised text's squeezed_prefix: its single spaces left out
    asked_keys = [text.replace(" ", "").encode()[:PREFIX_BYTES] for text in normalised]
    # keys that several rows share, or a query: there normalize_text tells the texts apart
    shared = {key for key, row, first in zip(keys, row_list, firsts, strict=True) if row != first}
    shared.update(key for key in asked_keys if key in owner)
    of_key = {key: number for number, key in enumerate(owner)}  # a class per key, to start
    of_row = dict(zip(row_list, map(of_key.__getitem__, keys), strict=True))
    by_text: dict[tuple[bytes, str], int] = {}
    for row, key in zip(row_list, keys, strict=True):
        if key in shared:
            text = (key, normalize_text(texts.peek(row)))
            of_row[row] = by_text.setdefault(text, len(of_key) + len(by_text))
    query_classes = [by_text.get(k, -1) for k in zip(asked_keys, normalised, strict=True)]
    return of_row, query_classes


def _padded(rows: Sequence[Sequence[int]], fill: int) -> Rows:
    """Ragged int lists as a (len(rows), max length) array padded with ``fill``."""
    out = np.full((len(rows), max((len(r) for r in rows), default=0)), fill, dtype=np.int64)
    for i, values in enumerate(rows):
        out[i, : len(values)] = values
    return out


def _member(values: Rows, sets: Rows) -> Mask:
    """values[i, j] in sets[i, :] for every i, j: (n, depth) vs (n, width) -> (n, depth).

    As one ``np.isin`` of (row, value) keys: memory grows with n x (depth + width), never with
    n x depth x width (a query with thousands of judged documents would multiply it).
    """
    if sets.shape[1] == 0 or values.size == 0:
        return np.zeros(values.shape, dtype=bool)
    low = min(int(values.min()), int(sets.min()))
    span = max(int(values.max()), int(sets.max())) - low + 1
    rows = np.arange(len(values), dtype=np.int64)[:, None] * span
    found = np.isin((values - low) + rows, (sets - low) + rows)
    return np.asarray(found, dtype=bool).reshape(values.shape)


def _classes_at(rows: Rows, of_row: Mapping[int, int], n_docs: int) -> Rows:
    """``of_row[rows[i, j]]`` as an array; -2 for corpus rows not in ``of_row`` and padding."""
    table = np.full(n_docs + 1, -2, dtype=np.int64)  # padding (-1) reads the extra last slot
    table[np.fromiter(of_row, np.int64, len(of_row))] = np.fromiter(
        of_row.values(), np.int64, len(of_row)
    )
    return table[rows]


def _rank(mask: Mask) -> Rows:
    """1-based rank of each True cell among the True cells of its row (0 elsewhere)."""
    return np.where(mask, np.cumsum(mask, axis=1), 0)


@dataclass(frozen=True)
class Selected:
    """Per query (rows of the lists): the chosen candidates' columns, in score order."""

    order: Rows  # (n, depth) columns of the lists, best score first (stable), padding last
    chosen: Mask  # (n, depth) over ``order``: the negatives picked
    removed: dict[str, int]  # reason -> candidates removed, over the filtered queries


def _score_reasons(
    scores: npt.NDArray[np.float64], lowest: npt.NDArray[np.float64], config: FilterConfig
) -> list[tuple[str, Mask]]:
    """Step 3's tests as masks, in the order the reasons are counted."""
    p = lowest[:, None]
    tests: list[tuple[str, Mask]] = []
    if config.absolute_margin is not None:
        tests.append(("absolute_margin", scores + config.absolute_margin > p))
    if config.relative_margin is not None:
        tests.append(("relative_margin", scores > p - np.abs(p) * config.relative_margin))
    if config.max_score is not None:
        tests.append(("max_score", scores > config.max_score))
    if config.min_score is not None:
        tests.append(("min_score", scores < config.min_score))
    return tests


def select_batch(
    split: BeirSplit,
    lists: CandidateLists,
    config: FilterConfig,
    filtered: Mask,
    texts: CorpusTexts | None = None,
) -> Selected:
    """Run every filter (steps 1-5 of ``miners.filters``) over the queries where ``filtered``."""
    corpus = split.corpus
    positions = lists.positions.astype(np.int64)
    valid = positions >= 0
    # best score first, stable (ties keep retrieval order), padding after every candidate
    order = np.lexsort((-lists.scores.astype(np.float64), ~valid), axis=1)
    candidates = np.take_along_axis(positions, order, axis=1)
    scores = np.take_along_axis(lists.scores, order, axis=1).astype(np.float64)
    live = np.take_along_axis(valid, order, axis=1) & filtered[:, None]

    positive_rows = [[corpus.position(d) for d in ids] for ids in lists.positive_ids]
    judged_rows = [
        [corpus.position(d) for d in split.qrels.get(q, {}) if d in corpus] for q in lists.query_ids
    ]
    flat_positives = np.fromiter(itertools.chain.from_iterable(positive_rows), np.int64)
    listed = np.zeros(len(corpus), dtype=bool)
    listed[candidates[live]] = listed[flat_positives] = True
    needed = np.flatnonzero(listed)
    queries = [split.queries[q] for q in lists.query_ids]
    texts = CorpusTexts(corpus) if texts is None else texts  # (an empty one is falsy)
    of_row, query_class = text_classes(texts, needed, queries)
    classes = _classes_at(candidates, of_row, len(corpus))  # (n, depth), -2 where not needed
    positive_classes = _padded([[of_row[r] for r in rows] for rows in positive_rows], -3)

    removed: dict[str, int] = {}
    left = live.copy()

    def drop(reason: str, mask: Mask) -> None:
        nonlocal left
        hit = left & mask
        if hit.any():
            removed[reason] = removed.get(reason, 0) + int(hit.sum())
        left &= ~hit

    # step 1: identity removals, which consume no rank
    drop("positive", _member(candidates, _padded(positive_rows, -1)))
    drop("judged", _member(candidates, _padded(judged_rows, -1)))
    drop("positive_text", _member(classes, positive_classes))
    drop("query_text", classes == np.asarray(query_class, dtype=np.int64)[:, None])
    if config.dedupe:  # a repeat of a text kept earlier in the same query
        width = int(classes.max(initial=0)) + 1
        flat = np.flatnonzero(left)
        composite = (flat // classes.shape[1]) * width + classes.flat[flat]
        _, first = np.unique(composite, return_index=True)
        repeat = left.copy()
        repeat.flat[flat[first]] = False
        drop("duplicate_text", repeat)
    # step 2: the range_max window, not a removal
    max_positives = max((len(p) for p in lists.positive_ids), default=1) or 1
    left &= _rank(left) <= config.resolve_range_max(max_positives)
    # step 3: score filters against the lowest positive, first failing test counted
    lowest = np.asarray([min(s) if s else np.nan for s in lists.positive_scores], np.float64)
    for reason, mask in _score_reasons(scores, lowest, config):
        drop(reason, mask)
    # step 4: skip the range_min best survivors
    if config.range_min:
        drop("range_min", _rank(left) <= config.range_min)
    # step 5: sampling
    chosen = left & (_rank(left) <= config.num_negatives)
    if config.sampling == "random":
        for row in np.flatnonzero(left.sum(axis=1) > config.num_negatives).tolist():
            columns = np.flatnonzero(left[row])
            rng = query_rng(config.seed, lists.query_ids[row])
            picked = sorted(rng.sample(range(len(columns)), k=config.num_negatives))
            chosen[row] = False
            chosen[row, columns[picked]] = True
    ordered = {r: removed[r] for r in REMOVAL_REASONS if r in removed}
    return Selected(order, chosen, ordered)


def select_from_candidates(
    split: BeirSplit,
    lists: CandidateLists,
    config: FilterConfig,
    method: str,
    provenance: Mapping[str, object] | None = None,
    progress: Progress = no_progress,
) -> MinedRun:
    """Filter every query's candidates; queries left short or empty are counted, never padded."""
    total = len(lists.query_ids)
    progress(0, total, "filtering")
    has_positive = np.asarray([bool(p) for p in lists.positive_ids], dtype=bool)
    has_candidates = np.asarray((lists.positions >= 0).any(axis=1), dtype=bool)
    corpus = split.corpus
    texts = CorpusTexts(corpus)
    selected = select_batch(split, lists, config, has_positive & has_candidates, texts)

    # every query's negatives (corpus rows, scores) in order, one after another
    counts = selected.chosen.sum(axis=1)
    ends = np.cumsum(counts).tolist()
    in_order = np.take_along_axis(lists.positions, selected.order, axis=1)
    all_rows = in_order[selected.chosen].tolist()
    all_scores = np.take_along_axis(lists.scores, selected.order, axis=1)[selected.chosen].tolist()

    rows: list[MinedQuery] = []
    skipped: dict[str, list[str]] = {}
    short: list[str] = []
    for row, (query_id, count) in enumerate(zip(lists.query_ids, counts.tolist(), strict=True)):
        if not has_positive[row]:
            skipped.setdefault("no_positive", []).append(query_id)
            continue
        if not has_candidates[row]:
            skipped.setdefault("no_candidates", []).append(query_id)
            continue
        if count < config.min_negatives:
            skipped.setdefault("too_few_negatives", []).append(query_id)
            continue
        if count < config.num_negatives:
            short.append(query_id)
        negatives = slice(ends[row] - count, ends[row])
        negative_rows = all_rows[negatives]
        positive_scores = dict(
            zip(lists.positive_ids[row], lists.positive_scores[row], strict=True)
        )
        positive_ids = tuple(positive_scores)
        rows.append(
            MinedQuery(
                query_id=query_id,
                query=split.queries[query_id],
                positive_ids=positive_ids,
                positives=tuple(texts[corpus.position(d)] for d in positive_ids),
                positive_scores=tuple(positive_scores.values()),
                negative_ids=tuple(corpus.ids[r] for r in negative_rows),
                negatives=tuple(texts[r] for r in negative_rows),
                negative_scores=tuple(all_scores[negatives]),
                method=method,
            )
        )
    progress(total, total, "filtering")
    report = FilterReport(
        num_queries=total,
        num_negatives=config.num_negatives,
        full=len(rows) - len(short),
        short=len(short),
        skipped={reason: len(ids) for reason, ids in skipped.items()},
        removed=selected.removed,
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


def select_retrieved(
    job: MiningJob,
    method: str,
    lists: CandidateLists,
    hit: bool,
    provenance: Mapping[str, object],
    progress: Progress = no_progress,
) -> MinedRun:
    """The job's filters over one retriever's ``lists`` (``hit``: read from the cache); the
    provenance gains the lists' depth and the cache hit."""
    described = dict(provenance) | {"candidate_depth": lists.depth, "cache_hit": hit}
    return select_from_candidates(job.split, lists, job.spec.filters, method, described, progress)
