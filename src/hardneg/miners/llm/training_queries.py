"""Training queries for a corpus without any: more of them, and better ones, per CPU minute.

On top of :func:`hardneg.miners.llm.queries.generate_queries` (cleaning, round trip):

- **passages spread over the corpus**: one seeded pick in each of ``n`` equal strata of the
  corpus order, so a corpus sorted by topic or date is covered end to end;
- **several queries per passage** (``per_passage`` samples, seeds ``seed..``);
- **a few-shot prompt in the corpus's own style** (Promptagator, Dai et al., ICLR 2023; InPars,
  Bonifacio et al., SIGIR 2022): a handful of the corpus's passages, each with a query, shown
  before the passage. The example queries are the user's (``examples``) or bootstrapped: a
  zero-shot pass over a few passages, whose best-scored survivors become the examples;
- **a scorer-based filter** beside the round trip (InPars): of the survivors, only the top
  ``keep_share`` by the teacher's score of (query, its passage) are kept; the others are
  dropped as ``low_score``. Every drop has its reason in the report.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hardneg.core.beir import Corpus
from hardneg.core.cache import Cache
from hardneg.core.progress import Progress, no_progress
from hardneg.miners.llm.client import LLMClient, SamplingParams
from hardneg.miners.llm.generation import GenerationStats
from hardneg.miners.llm.parsing import DropReport, QueryLimits
from hardneg.miners.llm.prompts import PromptTemplate
from hardneg.miners.llm.queries import (
    GeneratedQuery,
    QueryGenConfig,
    QueryGeneration,
    TextRetriever,
    generate_queries,
)
from hardneg.miners.pair_scores import Pairs, PairScorer

logger = logging.getLogger(__name__)

LOW_SCORE = "low_score"  # drop reason of the scorer-based filter

SHORT_QUERY = PromptTemplate(
    name="short-query",
    version="short-query-v1",
    system="You write short search questions.",
    user="Text: $passage\n\nWrite one short question (under 15 words) that this text answers.",
)
"""The zero-shot prompt of the bootstrap: short questions, which small models keep on topic."""


def spread_positions(corpus_size: int, count: int, seed: int) -> list[int]:
    """One seeded row in each of ``count`` equal strata of ``range(corpus_size)`` (all rows when
    ``count >= corpus_size``), in corpus order."""
    if count <= 0:
        raise ValueError(f"count must be positive, got {count}")
    if count >= corpus_size:
        return list(range(corpus_size))
    rng = random.Random(seed)
    edges = np.linspace(0, corpus_size, count + 1)
    return [
        rng.randrange(int(lo), max(int(lo) + 1, int(hi))) for lo, hi in itertools.pairwise(edges)
    ]


def _escape(text: str) -> str:
    return text.replace("$", "$$")


def few_shot_template(demos: Sequence[tuple[str, str]]) -> PromptTemplate:
    """``demos`` (passage, query) shown before ``$passage``; the version names the demos."""
    if not demos:
        raise ValueError("a few-shot prompt needs at least one example")
    shown = "".join(f"Text: {_escape(p)}\nQuestion: {_escape(q)}\n\n" for p, q in demos)
    digest = hashlib.sha256(repr(list(demos)).encode()).hexdigest()[:12]
    return PromptTemplate(
        name="few-shot-query",
        version=f"few-shot-query-v1-{digest}",
        system="You write short search questions like the examples.",
        user=f"{shown}Text: $passage\nQuestion:",
    )


@dataclass(frozen=True)
class TrainingQueryConfig:
    passages: int = 200
    per_passage: int = 2
    few_shot: bool = True
    examples: tuple[str, ...] = ()  # user's example queries (few-shot); empty: bootstrapped
    bootstrap_passages: int = 6
    demos: int = 2
    round_trip_k: int = 20
    keep_share: float = 0.9
    sampling: SamplingParams = field(
        default_factory=lambda: SamplingParams(max_tokens=40, temperature=0.7, seed=0)
    )
    max_passage_chars: int = 600
    max_words: int = 40
    seed: int = 0

    def generation(self, per_passage: int) -> QueryGenConfig:
        return QueryGenConfig(
            per_passage=per_passage,
            round_trip_k=self.round_trip_k,
            sampling=self.sampling,
            max_passage_chars=self.max_passage_chars,
            limits=QueryLimits(max_words=self.max_words),
            skip_failures=True,
        )


@dataclass(frozen=True)
class TrainingQueries:
    queries: tuple[GeneratedQuery, ...]
    report: DropReport  # every generation: kept, or dropped with its reason
    stats: GenerationStats
    passages: int
    prompt: dict[str, object]  # which template, and its examples


def passage_scores(
    queries: Sequence[GeneratedQuery], corpus: Corpus, scorer: PairScorer, progress: Progress
) -> np.ndarray:
    """The scorer's score of each query against the first passage that generated it."""
    if not queries:
        return np.zeros(0, np.float32)
    ids = tuple(q.doc_ids[0] for q in queries)
    texts = tuple(corpus.document(corpus.position(d)).full_text for d in ids)
    return np.asarray(scorer(Pairs(tuple(q.text for q in queries), ids, texts), progress))


def keep_top_share(
    queries: Sequence[GeneratedQuery], scores: np.ndarray, share: float, report: DropReport
) -> tuple[GeneratedQuery, ...]:
    """The top ``share`` of ``queries`` by score (at least one), original order kept; the rest
    are dropped from ``report``'s kept count as ``low_score``."""
    if not queries or share >= 1:
        return tuple(queries)
    keep = max(1, round(share * len(queries)))
    chosen = set(np.argsort(-scores, kind="stable")[:keep].tolist())
    for i, query in enumerate(queries):
        if i not in chosen:
            report.kept -= len(query.doc_ids)
            report.drop(LOW_SCORE, query.text)
    return tuple(q for i, q in enumerate(queries) if i in chosen)


def _passage(corpus: Corpus, doc_id: str, limit: int) -> str:
    document = corpus.document(corpus.position(doc_id))
    return (document.text.strip() or document.title)[:limit]


def bootstrap_demos(
    client: LLMClient,
    corpus: Corpus,
    retriever: TextRetriever,
    scorer: PairScorer,
    config: TrainingQueryConfig,
    cache: Cache | None,
    progress: Progress,
) -> tuple[list[tuple[str, str]], QueryGeneration]:
    """Few-shot examples from a zero-shot pass: the best-scored surviving (passage, query)s."""
    positions = spread_positions(len(corpus), config.bootstrap_passages, config.seed + 1)
    first = generate_queries(
        client, corpus, positions, retriever, config.generation(2), cache, SHORT_QUERY, progress
    )
    scores = passage_scores(first.queries, corpus, scorer, progress)
    demos: list[tuple[str, str]] = []
    used: set[str] = set()
    for i in np.argsort(-scores, kind="stable").tolist():
        query = first.queries[i]
        if query.doc_ids[0] in used:
            continue  # one example per passage
        used.add(query.doc_ids[0])
        demos.append((_passage(corpus, query.doc_ids[0], 300), query.text))
        if len(demos) == config.demos:
            break
    return demos, first


def example_demos(corpus: Corpus, config: TrainingQueryConfig) -> list[tuple[str, str]]:
    """User-given example queries, each paired with a spread passage (their style only)."""
    positions = spread_positions(len(corpus), len(config.examples), config.seed + 2)
    return [
        (_passage(corpus, corpus.ids[p], 300), query)
        for p, query in zip(positions, config.examples[: config.demos], strict=False)
    ]


def training_queries(
    client: LLMClient,
    corpus: Corpus,
    retriever: TextRetriever,
    scorer: PairScorer,
    config: TrainingQueryConfig,
    cache: Cache | None = None,
    progress: Progress = no_progress,
) -> TrainingQueries:
    """Generate, clean, round-trip and score-filter queries for passages spread over ``corpus``."""
    template = SHORT_QUERY
    prompt: dict[str, object] = {"name": template.name, "version": template.version}
    if config.few_shot:
        if config.examples:
            demos = example_demos(corpus, config)
            source = "user examples"
        else:
            demos, first = bootstrap_demos(
                client, corpus, retriever, scorer, config, cache, progress
            )
            prompt["bootstrap"] = first.report.to_json()  # not counted in the kept share
            source = "bootstrap"
        if demos:
            template = few_shot_template(demos)
            prompt |= {"name": template.name, "version": template.version}
            prompt |= {"examples": demos, "examples_from": source}
        else:
            logger.warning("no few-shot example survived the bootstrap: zero-shot prompt")
    positions = spread_positions(len(corpus), config.passages, config.seed)
    result = generate_queries(
        client,
        corpus,
        positions,
        retriever,
        config.generation(config.per_passage),
        cache,
        template,
        progress,
    )
    scores = passage_scores(result.queries, corpus, scorer, progress)
    kept = keep_top_share(result.queries, scores, config.keep_share, result.report)
    report = result.report
    logger.info("%d of %d generations kept as %d queries", report.kept, report.total, len(kept))
    return TrainingQueries(kept, report, result.stats, len(positions), prompt)
