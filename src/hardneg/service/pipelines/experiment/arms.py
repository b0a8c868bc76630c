"""Equal data for every arm: one training file per arm, with the same queries in the same order.

A miner may find fewer negatives than asked for a query, or none (its filters removed them all),
and it then writes no row for that query. Trained as is, arms would see different query sets, and
an arm's score would mix the negatives' effect with the query count. So every arm's training
file holds every budget query, in one order (sorted ids), with the positives of the qrels:

- the control arm ``none`` has no hard negatives at all (in-batch negatives only);
- a negative source's arm has the negatives its miner kept for that query, possibly none (the
  trainers pad missing slots and mask them out of the loss, so such a query still trains on its
  in-batch negatives).

With one seed, the trainers then draw the same batches for every arm (the batch order depends
on the seed and the number of rows only; :class:`hardneg.trainers.data.BatchSchedule`).

A teacher-scored arm (``gpl``) writes the same rows, every positive and negative then scored by
the teacher (:func:`hardneg.miners.pair_scores.score_rows`): a query without negatives needs its
positive's score too, since MarginMSE refuses a row without them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from hardneg.core.beir import BeirSplit
from hardneg.core.negatives import MinedQuery, read_mined, write_mined
from hardneg.miners.pair_scores import PairScorer, score_rows
from hardneg.service.pipelines.experiment.stages import Arm


def control_rows(split: BeirSplit) -> list[MinedQuery]:
    """One row per query of ``split`` with a positive, sorted by id, and no negatives."""
    rows = []
    for query_id in sorted(split.qrels):
        judged = split.qrels[query_id].items()
        positives = sorted(d for d, g in judged if g > 0 and d in split.corpus)
        if not positives:
            continue
        rows.append(
            MinedQuery(
                query_id=query_id,
                query=split.queries[query_id],
                positive_ids=tuple(positives),
                positives=tuple(
                    split.corpus.document(split.corpus.position(d)).full_text for d in positives
                ),
                negative_ids=(),
                negatives=(),
                method="none",
            )
        )
    return rows


def arm_rows(control: Sequence[MinedQuery], mined: Iterable[MinedQuery]) -> list[MinedQuery]:
    """The control's rows, each with the negatives ``mined`` has for its query (maybe none)."""
    found = {row.query_id: row for row in mined}
    unknown = set(found) - {row.query_id for row in control}
    if unknown:
        raise ValueError(f"mined rows for queries outside the budget: {sorted(unknown)[:3]}")
    rows = []
    for base in control:
        row = found.get(base.query_id)
        if row is None:
            rows.append(replace(base, method=""))
            continue
        rows.append(
            replace(
                base,
                negative_ids=row.negative_ids,
                negatives=row.negatives,
                negative_scores=row.negative_scores,
                positive_scores=_scores_for(base.positive_ids, row),
                method=row.method,
            )
        )
    return rows


def _scores_for(positive_ids: Sequence[str], row: MinedQuery) -> tuple[float | None, ...]:
    """The scores ``row`` gives the control's positives, by id (None where it has none)."""
    if not row.positive_scores:
        return ()
    scores = dict(zip(row.positive_ids, row.positive_scores, strict=True))
    return tuple(scores.get(d) for d in positive_ids)


def negative_histogram(rows: Iterable[MinedQuery]) -> dict[str, int]:
    """How many queries have 0, 1, ... k hard negatives (keys are counts, as strings)."""
    counts = Counter(len(row.negative_ids) for row in rows)
    return {str(k): counts[k] for k in sorted(counts)}


def write_arm_file(
    path: Path,
    arm: str,
    control: Sequence[MinedQuery],
    mined: Path | None,
    teacher: PairScorer | None = None,
) -> Arm:
    """Write ``arm``'s training file (every pair scored by ``teacher`` when one is given);
    returns its query count and negative histogram."""
    rows = list(control) if mined is None else arm_rows(control, read_mined(mined))
    meta: dict[str, object] = {"arm": arm, "mined": str(mined) if mined else None}
    described = None
    if teacher is not None:
        rows = score_rows(rows, teacher)
        described = teacher.describe()
        meta["teacher"] = described
    write_mined(path, rows, meta)
    return Arm(
        training_file=str(path),
        queries_trained=len(rows),
        query_ids_sha=_ids_digest(row.query_id for row in rows),
        negatives_histogram=negative_histogram(rows),
        teacher=described,
    )


def _ids_digest(ids: Iterable[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
