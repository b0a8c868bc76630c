"""Training queries for a corpus without any: more of them, and better ones, per CPU minute.

On top of :func:`hardneg.miners.llm.queries.generate_queries` (cleaning, round trip):

- **passages spread over the corpus**: one seeded pick in each of ``n`` equal strata of the
  corpus order, so a corpus sorted by topic or date is covered end to end;
- **several queries per call**: the prompt asks for ``per_call`` different questions, one per
  line, so one reading of the passage (the prompt's prefill, most of a small model's time on a
  CPU) pays for several queries; ``per_passage`` calls (seeds ``seed..``) multiply them again;
- **a few-shot prompt in the corpus's own style** (Promptagator, Dai et al., ICLR 2023; InPars,
  Bonifacio et al., SIGIR 2022), in chat form: worked exchanges (a passage, then its questions
  as the assistant's answer) before the passage. The corpus's own examples are bootstrapped: a
  pass over a few passages with one built-in, domain-neutral worked example, whose best-scored
  survivors become the examples. A user's ``examples`` are shown in the system message as the
  style wanted (they were not written for any passage here);
- **a scorer-based filter** beside the round trip (InPars): of the survivors, only the top
  ``keep_share`` by the teacher's score of (query, its passage) are kept; the others are
  dropped as ``low_score``. Every drop has its reason in the report.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import random
from collections.abc import Callable, Sequence
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

SYSTEM = "You write short search questions."
NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven"}
SEED_DEMO: tuple[str, tuple[str, ...]] = (
    "Bees visit flowers to collect nectar, which they turn into honey inside the hive. While "
    "they feed they carry pollen from one flower to the next, and many crops depend on this "
    "pollination for their yield.",
    (
        "how do bees turn nectar into honey?",
        "why do crops depend on bee pollination?",
        "what do bees carry from flower to flower?",
    ),
)
"""The built-in worked example of the bootstrap: domain-neutral, so it shows the form (short
questions, one per line) and no corpus's topic."""


def ask(passage: str, count: int) -> str:
    """The user message asking for ``count`` questions about ``passage``."""
    if count == 1:
        return f"Text: {passage}\n\nWrite one short question that this text answers."
    number = NUMBERS.get(count, str(count))
    return (
        f"Text: {passage}\n\nWrite {number} different short questions that this text answers, "
        "one per line."
    )


def list_template(
    name: str,
    demos: Sequence[tuple[str, Sequence[str]]],
    count: int,
    style: Sequence[str] = (),
) -> PromptTemplate:
    """Ask for ``count`` questions about ``$passage`` after the worked ``demos`` (passage, its
    questions); ``style`` queries, if any, are shown in the system message. The version names
    everything shown."""
    turns = tuple((ask(p, count), "\n".join(list(qs)[:count])) for p, qs in demos)
    system = SYSTEM
    if style:
        system += " Write them in the style of these: " + " | ".join(style)
    digest = hashlib.sha256(repr((turns, count, system)).encode()).hexdigest()[:12]
    return PromptTemplate(
        name=name,
        version=f"{name}-v2-{digest}",
        system=_escape(system),
        user=ask("$passage", count),
        turns=turns,
    )


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


def few_shot_template(demos: Sequence[tuple[str, Sequence[str]]], count: int = 1) -> PromptTemplate:
    """The corpus's own worked ``demos`` (passage, its questions) before ``$passage``."""
    if not demos:
        raise ValueError("a few-shot prompt needs at least one example")
    return list_template("few-shot-query", demos, count)


@dataclass(frozen=True)
class TrainingQueryConfig:
    passages: int = 200
    per_passage: int = 1
    per_call: int = 3
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
            per_call=self.per_call,
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


def pick_demos(
    queries: Sequence[GeneratedQuery], scores: np.ndarray, demos: int, per_call: int
) -> list[tuple[str, list[str]]]:
    """``demos`` passages, each with its questions best-scored first: those with the most
    questions (up to ``per_call``: an example of one question teaches the model to write one)
    and, among those, the best-scored."""
    by_passage: dict[str, list[tuple[float, str]]] = {}
    for query, score in zip(queries, scores.tolist(), strict=True):
        by_passage.setdefault(query.doc_ids[0], []).append((score, query.text))

    def rank(item: tuple[str, list[tuple[float, str]]]) -> tuple[int, float]:
        scored = item[1]
        return -min(len(scored), per_call), -max(scored)[0]

    best = sorted(by_passage.items(), key=rank)[:demos]
    return [(doc_id, [text for _, text in sorted(scored, reverse=True)]) for doc_id, scored in best]


def bootstrap_demos(
    client: LLMClient,
    corpus: Corpus,
    retriever: TextRetriever,
    scorer: PairScorer,
    config: TrainingQueryConfig,
    cache: Cache | None,
    progress: Progress,
) -> tuple[list[tuple[str, list[str]]], QueryGeneration]:
    """The corpus's own worked examples: a pass over ``bootstrap_passages`` with the built-in
    :data:`SEED_DEMO`, its survivors picked by :func:`pick_demos`."""
    positions = spread_positions(len(corpus), config.bootstrap_passages, config.seed + 1)
    template = list_template("one-shot-query", [SEED_DEMO], config.per_call)
    first = generate_queries(
        client, corpus, positions, retriever, config.generation(1), cache, template, progress
    )
    scores = passage_scores(first.queries, corpus, scorer, progress)
    demos = [
        (_passage(corpus, doc_id, 300), texts)
        for doc_id, texts in pick_demos(first.queries, scores, config.demos, config.per_call)
    ]
    return demos, first


Bootstrap = Callable[[], tuple[list[tuple[str, list[str]]], QueryGeneration]]


def prompt_template(
    config: TrainingQueryConfig, bootstrap: Bootstrap
) -> tuple[PromptTemplate, dict[str, object]]:
    """The template the queries are written with, and what it shows (for the report);
    ``bootstrap`` (:func:`bootstrap_demos`, bound) runs only for a few-shot prompt without
    user examples."""
    if not config.few_shot:
        template = list_template("zero-shot-query", [], config.per_call, config.examples)
        return template, {"name": template.name, "version": template.version}
    if config.examples:
        template = list_template("styled-query", [SEED_DEMO], config.per_call, config.examples)
        info: dict[str, object] = {"examples": list(config.examples)}
        return template, {"name": template.name, "version": template.version} | info
    demos, first = bootstrap()
    info = {"bootstrap": first.report.to_json()}  # not counted in the kept share
    if not demos:
        logger.warning("no worked example survived the bootstrap: the built-in one is used")
        demos, info["examples_from"] = [(SEED_DEMO[0], list(SEED_DEMO[1]))], "built-in"
    else:
        info["examples_from"] = "bootstrap"
    template = few_shot_template(demos, config.per_call)
    return template, {"name": template.name, "version": template.version, "examples": demos} | info


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
    template, prompt = prompt_template(
        config,
        lambda: bootstrap_demos(client, corpus, retriever, scorer, config, cache, progress),
    )
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
