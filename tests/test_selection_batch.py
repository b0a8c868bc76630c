"""The array filters of ``select_from_candidates`` against the one-query reference.

``tests/filters_reference.select_negatives`` is the reference (tests/test_filters.py checks it by
hand); the batch version must pick the same negatives in the same order, count the same removals and
report the same short and skipped queries, for random pools and every filter option.
"""

from __future__ import annotations

import itertools
import random
import sys

import numpy as np
import pytest

from hardneg.core.beir import BeirSplit, Corpus, Document
from hardneg.core.negatives import MinedQuery
from hardneg.miners.candidates import CandidateLists
from hardneg.miners.filters import (
    OTHER_SPACE,
    PREFIX_BYTES,
    REMOVAL_REASONS,
    FilterConfig,
    normalize_text,
    squeezed_prefix,
    squeezed_text,
)
from hardneg.miners.job import merge_counts
from hardneg.miners.selection import select_from_candidates
from tests.filters_reference import Candidate, QueryPool, select_negatives, text_key

LONG = " ".join(f"Word{i}" for i in range(60))  # squeezed, far longer than its prefix key
# texts that collide after normalisation (case, runs of whitespace) and one query's own text
TEXTS = [
    "Wolves eat deer.",
    "  wolves   EAT deer. ",
    "Deer eat grass.",
    "deer eat\tgrass.",
    "Foxes hunt rabbits.",
    "what do wolves eat",
    "Straße",
    "STRASSE",
    "ab c",  # same letters as the next once the spaces go, yet another text
    "a bc",
    "a\u00a0bc",  # no-break space: a copy of "a bc"
    "A\x1cBC\n",  # an ASCII separator str.split() knows
    # long texts: equal squeezed_prefix keys, told apart (or not) by the full normalised text
    LONG + " ending one",
    LONG + " ending two",
    " " * 300 + LONG.upper() + "\n ending  ONE",  # a copy of the first, its key from all of it
    "x" + LONG,
    *(f"document {i}" for i in range(16)),
]
QUERY_TEXTS = [
    "what do wolves eat",
    "deer",
    "WHAT do wolves EAT",
    "grass",
    "a  BC",
    "strasse",
    LONG + " ending two",
]


def random_case(seed: int) -> tuple[BeirSplit, CandidateLists]:
    rng = random.Random(seed)
    docs = [Document(f"d{i}", rng.choice(["", "", "T"]), t) for i, t in enumerate(TEXTS)]
    corpus = Corpus.from_documents(docs)
    n_docs, depth = len(docs), rng.choice([4, 8, 12])
    query_ids = [f"q{i}" for i in range(12)]
    queries = {q: rng.choice(QUERY_TEXTS) for q in query_ids}
    qrels: dict[str, dict[str, int]] = {}
    positions = np.full((len(query_ids), depth), -1, dtype=np.int32)
    scores = np.zeros((len(query_ids), depth), dtype=np.float32)
    positive_ids, positive_scores = [], []
    grid = [k / 8 for k in range(-8, 17)]  # exact binary fractions: many ties
    for row, query_id in enumerate(query_ids):
        judged = rng.sample(range(n_docs), rng.choice([0, 1, 1, 2, 3]))
        grades = {f"d{d}": rng.choice([0, 1, 1, 2]) for d in judged}
        qrels[query_id] = grades
        positives = tuple(sorted(d for d, g in grades.items() if g > 0))
        positive_ids.append(positives)
        positive_scores.append(tuple(rng.choice(grid) for _ in positives))
        count = rng.choice([0, depth // 2, depth, depth])
        picked = rng.sample(range(n_docs), count)
        slots = sorted(rng.sample(range(depth), count))  # padding may sit anywhere
        positions[row, slots] = picked
        scores[row, slots] = [rng.choice(grid) for _ in picked]
    split = BeirSplit("train", corpus, queries, qrels)
    lists = CandidateLists(
        tuple(query_ids), positions, scores, tuple(positive_ids), tuple(positive_scores)
    )
    return split, lists


def reference(
    split: BeirSplit, lists: CandidateLists, config: FilterConfig
) -> tuple[list[MinedQuery], dict[str, int], dict[str, list[str]], list[str]]:
    """The per-query path: a QueryPool per query, select_negatives, then the row."""
    corpus = split.corpus

    def text(doc_id: str) -> str:
        return corpus.document(corpus.position(doc_id)).full_text

    max_positives = max((len(p) for p in lists.positive_ids), default=1) or 1
    rows, removed, skipped, short = [], [], {}, []  # type: ignore[var-annotated]
    for row, query_id in enumerate(lists.query_ids):
        positives = dict(zip(lists.positive_ids[row], lists.positive_scores[row], strict=True))
        if not positives:
            skipped.setdefault("no_positive", []).append(query_id)
            continue
        candidates = [
            Candidate.from_text(corpus.ids[p], s, text(corpus.ids[p]))
            for p, s in zip(lists.positions[row].tolist(), lists.scores[row].tolist(), strict=True)
            if p >= 0
        ]
        if not candidates:
            skipped.setdefault("no_candidates", []).append(query_id)
            continue
        pool = QueryPool(
            query_id,
            text_key(split.queries[query_id]),
            positives,
            frozenset(text_key(text(d)) for d in positives),
            tuple(candidates),
            frozenset(split.qrels.get(query_id, {})),
        )
        selection = select_negatives(pool, config, max_positives)
        removed.append(selection.removed)
        if len(selection.negatives) < config.min_negatives:
            skipped.setdefault("too_few_negatives", []).append(query_id)
            continue
        if len(selection.negatives) < config.num_negatives:
            short.append(query_id)
        rows.append(
            MinedQuery(
                query_id=query_id,
                query=split.queries[query_id],
                positive_ids=tuple(positives),
                positives=tuple(text(d) for d in positives),
                positive_scores=tuple(positives.values()),
                negative_ids=tuple(c.doc_id for c in selection.negatives),
                negatives=tuple(text(c.doc_id) for c in selection.negatives),
                negative_scores=tuple(c.score for c in selection.negatives),
                method="m",
            )
        )
    return rows, merge_counts(removed), skipped, short


CONFIGS = [
    FilterConfig(num_negatives=2),
    FilterConfig(num_negatives=3, dedupe=False),
    FilterConfig(num_negatives=2, range_min=1, range_max=4),
    FilterConfig(num_negatives=3, relative_margin=0.25, min_negatives=2),
    FilterConfig(num_negatives=2, absolute_margin=0.125, max_score=1.25, min_score=-0.5),
    FilterConfig(num_negatives=2, absolute_margin=0.0, relative_margin=0.0, range_min=2),
    FilterConfig(num_negatives=2, sampling="random", seed=3, range_max=6),
    FilterConfig(num_negatives=1, sampling="random", seed=0, relative_margin=0.5),
]


@pytest.mark.parametrize(("seed", "config"), list(itertools.product(range(12), CONFIGS)))
def test_batch_filters_equal_the_per_query_reference(seed: int, config: FilterConfig) -> None:
    split, lists = random_case(seed)
    rows, removed, skipped, short = reference(split, lists, config)
    run = select_from_candidates(split, lists, config, "m")
    assert run.rows == tuple(rows)
    assert run.report.removed == removed
    assert {k: list(v) for k, v in run.report.skipped_ids.items()} == skipped
    assert list(run.report.short_ids) == short


def test_the_random_cases_exercise_every_removal() -> None:
    """Guard for the test above: its cases must hit each reason, or it would prove little."""
    seen: set[str] = set()
    for seed, config in itertools.product(range(12), CONFIGS):
        split, lists = random_case(seed)
        seen |= set(select_from_candidates(split, lists, config, "m").report.removed)
    assert seen == set(REMOVAL_REASONS)


def test_squeezed_text_is_the_normalised_text_without_spaces() -> None:
    every = "".join(chr(c) for c in range(128, sys.maxunicode + 1) if chr(c).isspace())
    assert every == OTHER_SPACE  # the separators squeezed_text looks for outside ASCII
    rng = random.Random(0)
    pieces = ["Wolf", "ß", "İ", "ﬁ", "K", "é", "x", *OTHER_SPACE, " ", "\t", "\n", "\x1c", "\r"]
    for _ in range(500):
        text = "".join(rng.choices(pieces, k=rng.randint(0, 12)))
        assert squeezed_text(text) == normalize_text(text).replace(" ", "").encode(), repr(text)


def test_squeezed_prefix_is_the_head_of_the_squeezed_text() -> None:
    rng = random.Random(1)
    pieces = ["Wolf", "ß", "ﬁ", "é", "x" * 40, " ", " " * 120, "\t", "\u3000", "\u2003" * 50]
    for _ in range(500):
        text = "".join(rng.choices(pieces, k=rng.randint(0, 40)))
        assert squeezed_prefix(text) == squeezed_text(text)[:PREFIX_BYTES], repr(text)
