"""A false-negative measurement that can fail: hide a known positive, mine, see if it comes back.

Every miner excludes the documents the qrels judge for a query, so counting judged documents
among the mined negatives measures nothing (it is 0 by construction). The false negatives that
hurt training are the *unjudged* relevant documents. To measure how often a miner would return
one, we manufacture them from what we know:

1. take the queries with at least two positives (graded > 0);
2. for each, hide one positive (seeded choice) from the qrels the miner sees; the others stay
   judged, so positive-aware filters (margins, denoising) still have a positive to compare with;
3. mine with those qrels, exactly as for training;
4. count the queries whose hidden positive is among their mined negatives.

``rate = returned / hidden_positives``. A query the miner skipped counts as not returned.
Corpus-free negatives (the LLM method writes new text) can never be a corpus document, so for
them the probe does not apply (:data:`NOT_APPLICABLE`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hardneg.core.negatives import MinedQuery

Qrels = Mapping[str, Mapping[str, int]]
NOT_APPLICABLE = "generated negatives are new texts, never corpus documents"


@dataclass(frozen=True)
class HiddenPositives:
    """The qrels the miner sees (one positive removed per probed query) and what was removed."""

    qrels: dict[str, dict[str, int]]  # probed queries only, minus their hidden positive
    hidden: dict[str, str]  # query id -> the hidden positive's doc id


@dataclass(frozen=True)
class ProbeResult:
    hidden_positives: int
    returned: int

    @property
    def rate(self) -> float | None:
        return self.returned / self.hidden_positives if self.hidden_positives else None

    def to_json(self) -> dict[str, object]:
        rate = self.rate
        return {
            "hidden_positives": self.hidden_positives,
            "returned": self.returned,
            "rate": None if rate is None else round(rate, 4),
        }


def hide_positives(
    qrels: Qrels, seed: int, query_ids: Iterable[str] | None = None
) -> HiddenPositives:
    """Steps 1-2: for every query (of ``query_ids``, default all) with >= 2 positives, hide one.

    The choice is seeded per query (``random.Random(f"{seed}:{query_id}")``), so it does not
    depend on which other queries are probed.
    """
    chosen = sorted(qrels if query_ids is None else set(query_ids) & set(qrels))
    seen: dict[str, dict[str, int]] = {}
    hidden: dict[str, str] = {}
    for query_id in chosen:
        judged = dict(qrels[query_id])
        positives = sorted(doc for doc, grade in judged.items() if grade > 0)
        if len(positives) < 2:
            continue
        doc = random.Random(f"{seed}:{query_id}").choice(positives)
        del judged[doc]
        seen[query_id], hidden[query_id] = judged, doc
    return HiddenPositives(seen, hidden)


def count_returned(rows: Iterable[MinedQuery], hidden: Mapping[str, str]) -> ProbeResult:
    """Step 4: how many hidden positives came back as a negative of their own query."""
    returned = sum(
        1 for row in rows if row.query_id in hidden and hidden[row.query_id] in row.negative_ids
    )
    return ProbeResult(hidden_positives=len(hidden), returned=returned)
