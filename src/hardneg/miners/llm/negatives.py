"""Corpus-free hard negatives: passages an LLM writes to look relevant without answering.

For each (query, positives) pair the LLM writes ``per_query`` passages on the query's topic that do
not answer it ("Don't Retrieve, Generate: Prompting LLMs for Synthetic Training Data in Dense
Retrieval", Sinha, 2025). Because a generator can still write an answer, or paraphrase the
positive, each passage is dropped when

* it is a near-duplicate of a positive: word-set Jaccard above ``max_positive_jaccard`` or
  embedding cosine above ``max_positive_cosine``;
* the scorer says it answers the query: it scores like the positive. With ``p`` the lowest
  positive score, an absolute margin ``m`` rejects ``score + m > p`` and a relative margin ``r``
  rejects ``score > p - |p| * r`` (``r = 0.05`` is NV-Retriever's TopK-PercPos 95%, Moreira et al.,
  2024), the conventions of :mod:`hardneg.miners.filters`.

Rows come out as :class:`hardneg.core.negatives.MinedQuery` with ``gen:<hash>`` negative ids.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from hardneg.core.beir import BeirSplit
from hardneg.core.cache import Cache
from hardneg.core.encoders import encode_texts
from hardneg.core.negatives import MinedQuery, QueryPositives
from hardneg.core.progress import Progress, no_progress
from hardneg.miners.llm.client import LLMClient, LLMError, SamplingParams
from hardneg.miners.llm.generation import GenerationJob, GenerationStats, generate_all
from hardneg.miners.llm.parsing import (
    ANSWERS_QUERY,
    NEAR_DUPLICATE_POSITIVE,
    DropReport,
    Parsed,
    PassageLimits,
    clean_passage,
    generated_id,
    token_jaccard,
    usable_outputs,
)
from hardneg.miners.llm.prompts import NEGATIVE, PromptTemplate

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder, SentenceTransformer

logger = logging.getLogger(__name__)

METHOD = "llm"
SCORE_BATCH = 64  # (query, draft) pairs per scorer call: the progress and cancel granularity

Embedder = Callable[[Sequence[str]], npt.NDArray[np.float32]]
"""Texts -> embeddings, one row per text: (n, dim)."""
Scorer = Callable[[Sequence[str], Sequence[str]], npt.NDArray[np.float32]]
"""(queries, passages) -> relevance score of each pair: (n,)."""


def bi_encoder_embedder(model: SentenceTransformer) -> Embedder:
    def embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return encode_texts(model, list(texts))  # (n, dim)

    return embed


def bi_encoder_scorer(model: SentenceTransformer, query_prompt: str = "") -> Scorer:
    """Dot product of the model's embeddings (cosine for cosine models)."""

    def score(queries: Sequence[str], passages: Sequence[str]) -> npt.NDArray[np.float32]:
        q = encode_texts(model, list(queries), prompt=query_prompt or None)  # (n, dim)
        p = encode_texts(model, list(passages))  # (n, dim)
        return np.einsum("nd,nd->n", q, p).astype(np.float32)  # (n,)

    return score


def cross_encoder_scorer(model: CrossEncoder, batch_size: int = 32) -> Scorer:
    def score(queries: Sequence[str], passages: Sequence[str]) -> npt.NDArray[np.float32]:
        pairs = [(q, p) for q, p in zip(queries, passages, strict=True)]
        scores = model.predict(pairs, batch_size=batch_size, show_progress_bar=False)
        return np.asarray(scores, dtype=np.float32).reshape(len(pairs))  # (n,)

    return score


def split_positives(
    split: BeirSplit, query_ids: Sequence[str] | None = None
) -> list[QueryPositives]:
    """(query, positives) for each query of a split; positives are docs graded > 0."""
    items = []
    for query_id in query_ids if query_ids is not None else list(split.queries):
        judged = [d for d, grade in split.qrels.get(query_id, {}).items() if grade > 0]
        if not judged:
            continue
        texts = tuple(split.corpus.document(split.corpus.position(d)).full_text for d in judged)
        items.append(QueryPositives(query_id, split.queries[query_id], tuple(judged), texts))
    return items


@dataclass(frozen=True)
class NegativeGenConfig:
    per_query: int = 2
    sampling: SamplingParams = field(
        default_factory=lambda: SamplingParams(max_tokens=160, temperature=0.8, seed=0)
    )
    max_positive_chars: int = 1200  # the positive shown in the prompt is cut to this
    limits: PassageLimits = field(default_factory=PassageLimits)
    max_positive_jaccard: float = 0.6
    max_positive_cosine: float = 0.9
    relative_margin: float | None = 0.05  # 95% of the positive's score (TopK-PercPos)
    absolute_margin: float | None = None
    min_negatives: int = 1  # queries left with fewer are reported, not written
    skip_failures: bool = False

    def __post_init__(self) -> None:
        if min(self.per_query, self.min_negatives, self.max_positive_chars) <= 0:
            raise ValueError("per_query, min_negatives and max_positive_chars must be positive")


@dataclass(frozen=True)
class NegativeGeneration:
    rows: tuple[MinedQuery, ...]
    report: DropReport
    stats: GenerationStats
    skipped_queries: tuple[str, ...]  # fewer than min_negatives survived


@dataclass(frozen=True)
class _Draft:
    item: int  # index into the input items
    text: str


def answers_query(score: float, lowest_positive: float, config: NegativeGenConfig) -> bool:
    """Whether ``score`` is close enough to the lowest positive's to count as an answer.

    Same conventions as the shared mining filters: absolute margin m rejects ``score + m > p``,
    relative margin r rejects ``score > p - |p| * r``.
    """
    p = lowest_positive
    if config.absolute_margin is not None and score + config.absolute_margin > p:
        return True
    return config.relative_margin is not None and score > p - abs(p) * config.relative_margin


def _jobs(
    items: Sequence[QueryPositives], template: PromptTemplate, config: NegativeGenConfig
) -> list[GenerationJob]:
    base_seed = config.sampling.seed or 0
    return [
        GenerationJob(
            template,
            {"query": item.query, "positive": item.positives[0][: config.max_positive_chars]},
            replace(config.sampling, seed=base_seed + sample),
        )
        for item in items
        for sample in range(config.per_query)
    ]


def _parse(
    items: Sequence[QueryPositives],
    outputs: Sequence[str | LLMError],
    config: NegativeGenConfig,
    report: DropReport,
) -> list[_Draft]:
    def clean(item: int, output: str) -> Parsed:
        return clean_passage(output, items[item].query, config.limits)

    drafts: list[_Draft] = []
    usable = usable_outputs(outputs, config.per_query, clean, config.skip_failures, report)
    for item, text in usable:
        if max(token_jaccard(text, p) for p in items[item].positives) > config.max_positive_jaccard:
            report.drop(NEAR_DUPLICATE_POSITIVE, text)
            continue
        drafts.append(_Draft(item, text))
    return drafts


def _max_positive_cosine(
    items: Sequence[QueryPositives], drafts: Sequence[_Draft], embed: Embedder
) -> npt.NDArray[np.float32]:
    positives = sorted({(d.item, p) for d in drafts for p in items[d.item].positives})
    vectors = embed([d.text for d in drafts] + [p for _, p in positives])  # (n + m, dim)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.maximum(norms, 1e-12)
    drafted, positive_vectors = vectors[: len(drafts)], vectors[len(drafts) :]
    best = np.full(len(drafts), -1.0, dtype=np.float32)  # (n,)
    for row, draft in enumerate(drafts):
        mine = [j for j, (owner, _) in enumerate(positives) if owner == draft.item]
        best[row] = float(np.max(positive_vectors[mine] @ drafted[row]))
    return best


def _drop_near_duplicates(
    items: Sequence[QueryPositives],
    drafts: list[_Draft],
    embed: Embedder | None,
    config: NegativeGenConfig,
    report: DropReport,
) -> list[_Draft]:
    if embed is None or not drafts:
        return drafts
    cosines = _max_positive_cosine(items, drafts, embed)
    kept = []
    for draft, cosine in zip(drafts, cosines, strict=True):
        if cosine > config.max_positive_cosine:
            report.drop(NEAR_DUPLICATE_POSITIVE, draft.text)
        else:
            kept.append(draft)
    return kept


def _score(
    items: Sequence[QueryPositives],
    drafts: Sequence[_Draft],
    score: Scorer | None,
    progress: Progress = no_progress,
) -> tuple[list[float | None], list[tuple[float | None, ...]]]:
    """Scores of every draft and of every item's positives (None without a scorer), scored
    ``SCORE_BATCH`` pairs at a time with a progress report after each."""
    if score is None:
        return [None] * len(drafts), [(None,) * len(item.positives) for item in items]
    pairs_q = [items[d.item].query for d in drafts]
    pairs_p = [d.text for d in drafts]
    for item in items:
        pairs_q.extend([item.query] * len(item.positives))
        pairs_p.extend(item.positives)
    scores: list[float] = []
    for start in range(0, len(pairs_q), SCORE_BATCH):
        stop = start + SCORE_BATCH
        scores += [float(s) for s in score(pairs_q[start:stop], pairs_p[start:stop])]
        progress(len(scores), len(pairs_q), "scoring negatives")
    draft_scores: list[float | None] = list(scores[: len(drafts)])
    positive_scores: list[tuple[float | None, ...]] = []
    offset = len(drafts)
    for item in items:
        positive_scores.append(tuple(scores[offset : offset + len(item.positives)]))
        offset += len(item.positives)
    return draft_scores, positive_scores


def generate_negatives(
    client: LLMClient,
    items: Sequence[QueryPositives],
    embed: Embedder | None = None,
    score: Scorer | None = None,
    config: NegativeGenConfig | None = None,
    cache: Cache | None = None,
    template: PromptTemplate = NEGATIVE,
    progress: Progress = no_progress,
) -> NegativeGeneration:
    """Write, clean and filter negatives for each item; see the module docstring."""
    config = config or NegativeGenConfig()
    batch = generate_all(client, _jobs(items, template, config), cache, progress)
    report = DropReport()
    drafts = _parse(items, batch.outputs, config, report)
    progress(0, 1, "filtering negatives")
    drafts = _drop_near_duplicates(items, drafts, embed, config, report)
    draft_scores, positive_scores = _score(items, drafts, score, progress)
    progress(1, 1, "filtering negatives")
    accepted: dict[int, list[tuple[str, float | None]]] = {}
    for draft, draft_score in zip(drafts, draft_scores, strict=True):
        known = [s for s in positive_scores[draft.item] if s is not None]
        if draft_score is not None and known and answers_query(draft_score, min(known), config):
            report.drop(ANSWERS_QUERY, draft.text)
            continue
        accepted.setdefault(draft.item, []).append((draft.text, draft_score))
    report.keep(sum(len(v) for v in accepted.values()))
    rows, skipped = [], []
    for index, item in enumerate(items):
        negatives = accepted.get(index, [])
        if len(negatives) < config.min_negatives:
            skipped.append(item.query_id)
            continue
        negatives.sort(key=lambda pair: -(pair[1] if pair[1] is not None else 0.0))
        rows.append(
            MinedQuery(
                query_id=item.query_id,
                query=item.query,
                positive_ids=item.positive_ids,
                positives=item.positives,
                negative_ids=tuple(generated_id(text) for text, _ in negatives),
                negatives=tuple(text for text, _ in negatives),
                positive_scores=positive_scores[index],
                negative_scores=tuple(s for _, s in negatives),
                method=METHOD,
            )
        )
    if skipped:
        logger.warning("%d queries got fewer than %d negatives", len(skipped), config.min_negatives)
    return NegativeGeneration(tuple(rows), report, batch.stats, tuple(skipped))
