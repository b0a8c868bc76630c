"""Filters shared by every miner: which candidates may become hard negatives of a query.

The semantics follow sentence-transformers' ``mine_hard_negatives`` (and extend it):

1. Identity removals, which never consume a rank: the query's positives, any other document
   judged for the query in the qrels, texts identical to a positive or to the query (after
   whitespace/case normalisation), and repeated texts (only the best-scored copy is kept).
2. ``range_max``: only the ``range_max`` best remaining candidates are considered.
3. Score filters, in sentence-transformers' order (a candidate is counted under the first one
   that removes it), all against the miner's own scorer (BM25, cosine, cross-encoder):

   - ``absolute_margin`` m: drop when ``score + m > p``,
   - ``relative_margin`` r: drop when ``score > p - |p| * r``,
   - ``max_score``: drop when ``score > max_score``; ``min_score``: drop when below,

   where ``p`` is the LOWEST positive score of the query (the safe side with several positives).
   A relative margin of 0.05 is NV-Retriever's "TopK-PercPos (95%)" (Moreira et al.,
   "NV-Retriever: Improving text embedding models with effective hard-negative mining", 2024).
4. ``range_min``: the ``range_min`` best survivors are skipped (as sentence-transformers does,
   after the score filters).
5. Sampling of ``num_negatives``: ``top`` keeps the best survivors; ``random`` draws uniformly
   from all survivors with a generator seeded by (seed, query id), then re-sorts by score.

A query that keeps fewer than ``num_negatives`` is never padded: callers report it.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from pydantic import Field, model_validator

from hardneg.core.spec import Section

Sampling = Literal["top", "random"]

# Removal reasons, in the order the filters run.
REMOVAL_REASONS = (
    "positive",
    "judged",
    "positive_text",
    "query_text",
    "duplicate_text",
    "absolute_margin",
    "relative_margin",
    "max_score",
    "min_score",
    "range_min",
)


class FilterConfig(Section):
    """Which candidates may become negatives, and how many to keep per query."""

    num_negatives: int = Field(3, ge=1, le=200, description="negatives per query")
    range_min: int = Field(0, ge=0, le=10_000, description="skip this many best candidates")
    range_max: int | None = Field(
        None, ge=1, le=10_000, description="consider this many candidates (null: derived)"
    )
    max_score: float | None = Field(None, description="drop candidates above")
    min_score: float | None = Field(None, description="drop candidates below")
    absolute_margin: float | None = Field(
        None, description="drop if score + margin > lowest positive score"
    )
    relative_margin: float | None = Field(
        None, description="drop if score > p - |p| * margin (p: lowest positive score)"
    )
    sampling: Sampling = Field("top", description="top or random")
    seed: int = Field(0, ge=0, description="seed for random sampling")
    min_negatives: int = Field(1, ge=1, description="skip queries left with fewer negatives")
    dedupe: bool = Field(True, description="keep one copy of repeated texts")

    @model_validator(mode="after")
    def _consistent(self) -> FilterConfig:
        if self.range_max is not None and self.range_max - self.range_min < self.num_negatives:
            raise ValueError(
                f"range_max={self.range_max} leaves fewer than num_negatives="
                f"{self.num_negatives} candidates after range_min={self.range_min}"
            )
        if self.min_negatives > self.num_negatives:
            raise ValueError(
                f"min_negatives must be in [1, num_negatives], got {self.min_negatives}"
            )
        if (
            self.max_score is not None
            and self.min_score is not None
            and self.min_score > self.max_score
        ):
            raise ValueError(f"min_score {self.min_score} is above max_score {self.max_score}")
        return self

    @property
    def filters_by_score(self) -> bool:
        return any(
            value is not None
            for value in (self.absolute_margin, self.relative_margin, self.max_score)
        )

    def resolve_range_max(self, max_positives: int) -> int:
        """``range_max``, or sentence-transformers' default for it.

        With score filters some candidates will be dropped, so ten per wanted negative are
        considered; without, just enough (plus ``max_positives``, as sentence-transformers does).
        """
        if self.range_max is not None:
            return self.range_max
        per_negative = 10 if self.filters_by_score else 1
        return self.range_min + per_negative * self.num_negatives + max_positives


def normalize_text(text: str) -> str:
    """Case-folded, whitespace-collapsed text."""
    return " ".join(text.casefold().split())


# the characters str.split() separates words on: ASCII ones, and the others (Unicode White_Space)
_ASCII_SPACE = bytes(c for c in range(128) if chr(c).isspace())
OTHER_SPACE = (
    "\x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)


def squeezed_text(text: str) -> bytes:
    """``normalize_text`` with the spaces left out, UTF-8: texts with equal normalised texts
    always have equal squeezed texts (the converse can fail: "a bc" and "ab c").

    Cheap for ASCII text (where ``casefold`` is ``lower`` and the whitespace is ASCII): a
    pre-grouping, so that ``normalize_text`` runs only where squeezed texts collide.
    """
    if text.isascii():
        return text.lower().encode("ascii").translate(None, _ASCII_SPACE)
    folded = text.casefold()
    if any(space in folded for space in OTHER_SPACE):
        return "".join(folded.split()).encode()
    return folded.encode().translate(None, _ASCII_SPACE)  # UTF-8 keeps ASCII bytes apart


PREFIX_BYTES = 64  # squeezed_prefix's length
_PREFIX_WINDOW = 4 * PREFIX_BYTES  # characters squeezed first, usually enough


def squeezed_prefix(text: str) -> bytes:
    """``squeezed_text(text)[:PREFIX_BYTES]``, mostly from the text's first characters only.

    Squeezing works character by character, so the squeezed head of a text is the head of its
    squeezed text. A key that texts with equal normalised texts share, cheap whatever the
    length; ``normalize_text`` then tells apart the few texts whose keys collide.
    """
    head = squeezed_text(text[:_PREFIX_WINDOW])
    if len(head) < PREFIX_BYTES and len(text) > _PREFIX_WINDOW:  # mostly spaces so far
        head = squeezed_text(text)
    return head[:PREFIX_BYTES]


def text_key(text: str) -> str:
    """The identity used for dedupe: a digest of the normalised text."""
    return hashlib.blake2b(normalize_text(text).encode(), digest_size=16).hexdigest()


class Candidate(NamedTuple):
    """A possible negative (a tuple: thousands are made per query set, cheaply)."""

    doc_id: str
    score: float
    key: str  # text_key of the candidate's text

    @classmethod
    def from_text(cls, doc_id: str, score: float, text: str) -> Candidate:
        return cls(doc_id, score, text_key(text))


@dataclass(frozen=True)
class QueryPool:
    """One query's candidates (best first) and what must never become its negative."""

    query_id: str
    query_key: str  # text_key of the query
    positive_scores: Mapping[str, float]  # positive doc id -> score under the miner's scorer
    positive_keys: frozenset[str]  # text_key of each positive's text
    candidates: tuple[Candidate, ...]
    judged_ids: frozenset[str] = frozenset()  # every qrels doc of the query, any grade

    @classmethod
    def from_texts(
        cls,
        query_id: str,
        query: str,
        positives: Mapping[str, tuple[float, str]],
        candidates: Sequence[Candidate],
        judged_ids: frozenset[str] = frozenset(),
    ) -> QueryPool:
        """Build a pool from texts: ``positives`` maps doc id -> (score, text)."""
        return cls(
            query_id,
            text_key(query),
            {doc_id: score for doc_id, (score, _) in positives.items()},
            frozenset(text_key(text) for _, text in positives.values()),
            tuple(candidates),
            judged_ids,
        )


@dataclass(frozen=True)
class Selection:
    negatives: tuple[Candidate, ...]
    removed: Mapping[str, int] = field(default_factory=dict)


def lowest_positive(positive_scores: Mapping[str, float]) -> float | None:
    return min(positive_scores.values()) if positive_scores else None


def drop_known(
    candidates: Sequence[Candidate], pool: QueryPool, dedupe: bool = True
) -> tuple[list[Candidate], Counter[str]]:
    """Step 1: remove positives, judged docs, copies of a positive or of the query, repeats."""
    removed: Counter[str] = Counter()
    seen: set[str] = set()
    kept: list[Candidate] = []
    for candidate in candidates:
        if candidate.doc_id in pool.positive_scores:
            removed["positive"] += 1
        elif candidate.doc_id in pool.judged_ids:
            removed["judged"] += 1
        elif candidate.key in pool.positive_keys:
            removed["positive_text"] += 1
        elif candidate.key == pool.query_key:
            removed["query_text"] += 1
        elif dedupe and candidate.key in seen:
            removed["duplicate_text"] += 1
        else:
            seen.add(candidate.key)
            kept.append(candidate)
    return kept, removed


def score_rejection(
    score: float, lowest_positive_score: float | None, config: FilterConfig
) -> str | None:
    """The first score filter that rejects ``score`` (step 3), or None when it passes."""
    p = lowest_positive_score
    if p is not None and config.absolute_margin is not None and score + config.absolute_margin > p:
        return "absolute_margin"
    relative = config.relative_margin
    if p is not None and relative is not None and score > p - abs(p) * relative:
        return "relative_margin"
    if config.max_score is not None and score > config.max_score:
        return "max_score"
    if config.min_score is not None and score < config.min_score:
        return "min_score"
    return None


def apply_score_filters(
    candidates: Sequence[Candidate], lowest_positive_score: float | None, config: FilterConfig
) -> tuple[list[Candidate], Counter[str]]:
    removed: Counter[str] = Counter()
    kept: list[Candidate] = []
    for candidate in candidates:
        reason = score_rejection(candidate.score, lowest_positive_score, config)
        if reason is None:
            kept.append(candidate)
        else:
            removed[reason] += 1
    return kept, removed


def query_rng(seed: int, query_id: str) -> random.Random:
    """A generator that depends only on (seed, query id): stable across runs and subsets."""
    return random.Random(f"{seed}:{query_id}")


def sample(
    candidates: Sequence[Candidate], n: int, strategy: Sampling, rng: random.Random
) -> list[Candidate]:
    """Step 5: the best ``n``, or ``n`` drawn uniformly and re-sorted by score."""
    if strategy == "top" or len(candidates) <= n:
        return list(candidates[:n])
    chosen = rng.sample(range(len(candidates)), k=n)
    return [candidates[i] for i in sorted(chosen)]


def select_negatives(pool: QueryPool, config: FilterConfig, max_positives: int = 1) -> Selection:
    """Run every filter over one query's candidates and pick its negatives."""
    ordered = sorted(pool.candidates, key=lambda c: -c.score)  # stable: ties keep retrieval order
    kept, removed = drop_known(ordered, pool, config.dedupe)
    kept = kept[: config.resolve_range_max(max_positives)]  # the window, not a removal
    kept, by_score = apply_score_filters(kept, lowest_positive(pool.positive_scores), config)
    removed.update(by_score)
    skipped = min(config.range_min, len(kept))
    if skipped:
        removed["range_min"] += skipped
        kept = kept[skipped:]
    rng = query_rng(config.seed, pool.query_id)
    chosen = sample(kept, config.num_negatives, config.sampling, rng)
    return Selection(tuple(chosen), {k: v for k, v in removed.items() if v})
