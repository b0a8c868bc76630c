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

import random
from typing import Literal

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


def query_rng(seed: int, query_id: str) -> random.Random:
    """A generator that depends only on (seed, query id): stable across runs and subsets."""
    return random.Random(f"{seed}:{query_id}")
