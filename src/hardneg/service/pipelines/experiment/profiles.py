"""Experiment profiles: one budget and one training recipe shared by every negative source.

``quick`` is sized for a 2-core CPU (about half an hour on SciFact); ``full`` is the GPU box's
run. Every method gets the same training queries, the same number of mined negatives per query
and the same optimizer steps, so differences in the report come from the negatives alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

METHODS: tuple[str, ...] = ("bm25", "dense", "cross-encoder", "llm")


@dataclass(frozen=True)
class Profile:
    name: str
    # budget, the same for every negative source
    train_queries: int | None  # training queries mined and trained on (None: all of them)
    num_negatives: int  # negatives mined per query
    pool_depth: int  # cross-encoder: BM25 ∪ dense top-N rescored per query
    # training recipe: STAR, then ADORE from the STAR model
    freeze_documents: bool  # STAR trains the query tower only (corpus encoded once)
    batch_size: int
    negatives_per_step: int  # static negatives per query and step (STAR)
    star_steps: int
    star_learning_rate: float
    adore_steps: int
    adore_learning_rate: float
    adore_top_k: int
    max_doc_length: int
    eval_steps: int  # test-split points on the training curves (0: only before/after)
    # the cross-encoder trained for cross-encoder mining when none is given
    reranker_queries: int  # held-out training queries (never in the budget)
    reranker_steps: int
    reranker_learning_rate: float
    reranker_negatives: int
    reranker_max_length: int  # tokens per (query, document) pair, training and mining
    # LLM
    llm_max_tokens: int
    llm_max_positive_chars: int  # the positive shown to the LLM is cut to this
    generate_passages: int  # passages to write queries for when the corpus has no train split
    trims: tuple[str, ...] = ()  # what this profile leaves out, said in the report

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


QUICK = Profile(
    name="quick",
    train_queries=512,
    num_negatives=1,
    pool_depth=8,
    freeze_documents=True,
    batch_size=16,
    negatives_per_step=1,
    star_steps=40,
    star_learning_rate=1e-4,
    adore_steps=100,
    adore_learning_rate=1e-4,
    adore_top_k=100,
    max_doc_length=256,
    eval_steps=20,
    reranker_queries=297,
    reranker_steps=60,
    reranker_learning_rate=1e-4,
    reranker_negatives=3,
    reranker_max_length=128,
    llm_max_tokens=48,
    llm_max_positive_chars=500,
    generate_passages=300,
    trims=(
        "512 training queries per method (a seeded sample) with 1 negative each: the packaged "
        "LLM writes about one negative per 2 s on 2 CPU cores, and every method gets the same "
        "budget (the other 297 training queries train the cross-encoder)",
        "STAR trains the query tower only, against the base model's frozen document "
        "embeddings (so the corpus is encoded once); the full profile trains the shared encoder",
        "40 STAR + 100 ADORE steps of 16 queries; ADORE retrieves the top 100, not 200",
        "the cross-encoder is a MiniLM reranker trained here for 60 steps on the 297 held-out "
        "training queries (none can be downloaded offline); it rescores BM25 ∪ dense top 8 "
        "with pairs cut to 128 tokens; pass --cross-encoder to use a real one",
        "LLM negatives come from the packaged SmolLM2-135M: 48-token passages written from the "
        "query and the first 500 characters of its positive (a real 1-8B model through the "
        "openai backend is the intended use)",
    ),
)

FULL = Profile(
    name="full",
    train_queries=None,
    num_negatives=8,
    pool_depth=100,
    freeze_documents=False,
    batch_size=64,
    negatives_per_step=4,
    star_steps=1000,
    star_learning_rate=2e-5,
    adore_steps=1000,
    adore_learning_rate=5e-5,
    adore_top_k=200,
    max_doc_length=256,
    eval_steps=200,
    reranker_queries=2000,
    reranker_steps=1000,
    reranker_learning_rate=2e-5,
    reranker_negatives=7,
    reranker_max_length=320,
    llm_max_tokens=160,
    llm_max_positive_chars=1200,
    generate_passages=5000,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (QUICK, FULL)}


def get_profile(name: str, **overrides: Any) -> Profile:
    """A named profile, with field overrides (e.g. ``star_steps=10``) for small runs."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r} (available: {', '.join(PROFILES)})")
    profile = PROFILES[name]
    unknown = set(overrides) - set(asdict(profile))
    if unknown:
        raise ValueError(f"unknown profile field(s): {', '.join(sorted(unknown))}")
    return replace(profile, **overrides) if overrides else profile
