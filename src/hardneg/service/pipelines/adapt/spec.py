"""The one typed spec of ``adapt`` (:mod:`hardneg.core.spec`): the API body of
``POST /v1/jobs/adapt`` and, generated from it, the options of ``hardneg adapt`` (flags for the
common fields, ``--config FILE`` and ``--set key=value`` for any, dotted: ``queries.passages``).
Torch-free.

Its two groups (``queries``, ``train``) are nested specs: addressed by dotted names and kept as
one object each in the API's JSON. What the corpus is stays out of it (the CLI's ``--data``, the
job's corpus); the LLM that writes the queries is the server's (``llm``, set from its settings).
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, model_validator

from hardneg.core.spec import Spec
from hardneg.miners.llm.backends import BackendConfig, server_llm

Prompt = Literal["zero-shot", "few-shot"]
Teacher = Literal["hybrid", "cross-encoder"]


class QueryOptions(Spec):
    """Generated training queries: how many, from which passages, and what is kept."""

    passages: int = Field(200, ge=2, le=1_000_000, description="passages, spread over the corpus")
    per_passage: int = Field(1, ge=1, le=20, description="calls per passage (seeds seed..)")
    per_call: int = Field(
        3,
        ge=1,
        le=7,
        description="different questions asked for in one call, one per line: one reading of "
        "the passage (the prompt's prefill) pays for several queries",
    )
    prompt: Prompt = Field(
        "few-shot",
        description="few-shot: worked exchanges (a passage of the corpus, its questions) shown "
        "before each passage, bootstrapped from a pass with a built-in example",
    )
    examples: list[str] = Field(
        default_factory=list,
        max_length=8,
        description="example queries in the style wanted, shown in the system message "
        "(few-shot with examples skips the bootstrap)",
    )
    bootstrap_passages: int = Field(6, ge=1, le=100, description="few-shot bootstrap passages")
    demos: int = Field(2, ge=1, le=8, description="few-shot examples shown per prompt")
    round_trip: Literal["bm25", "dense"] = Field(
        "bm25", description="a query is kept when this retriever finds its passage in the top k"
    )
    round_trip_k: int = Field(20, ge=1, le=1000)
    keep_share: float = Field(
        0.9,
        gt=0,
        le=1,
        description="InPars-style filter: of the round-trip survivors keep this top share by "
        "the teacher's score of (query, its passage)",
    )
    stop_at_question: bool = Field(
        True,
        description="per_call 1: end each generation at its first '?', sentence end or line "
        "break; more: at the first blank line (shorter, faster)",
    )
    max_words: int = Field(40, ge=3, le=200, description="longer queries are dropped")
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(40, ge=8, le=512, description="tokens per question asked for")
    max_passage_chars: int = Field(600, ge=100, le=20_000)


class TrainOptions(Spec):
    """MarginMSE training of the bi-encoder, validated on a slice of the generated queries."""

    num_negatives: int = Field(4, ge=1, le=64, description="negatives mined per query")
    negatives_method: Literal["bm25", "dense"] = Field(
        "dense",
        description="who mines the negatives: dense (the base model's own top hits, as GPL) or "
        "bm25. On Cranfield's generated validation queries dense negatives took nDCG@10 from "
        "0.351 to 0.407, BM25 negatives only to 0.369 (bench/results/adapt-choices.json)",
    )
    negatives_per_step: int = Field(2, ge=1, le=64)
    steps: int = Field(150, ge=1, le=1_000_000, description="optimizer steps at most")
    eval_steps: int = Field(25, ge=1, le=1_000_000, description="validation every N steps")
    batch_size: int = Field(16, ge=1, le=4096)
    learning_rate: float = Field(5e-5, gt=0, le=1)
    max_doc_length: int = Field(256, ge=8, le=8192)
    freeze_documents: bool = Field(
        True, description="train the query tower only, against the base model's frozen documents"
    )
    val_share: float = Field(
        0.2, gt=0, lt=1, description="share of the passages whose queries validate (never train)"
    )
    min_gain: float = Field(
        0.0, ge=0, description="do-no-harm: nDCG@10 a checkpoint must beat the base model by"
    )


class AdaptSpec(Spec):
    """Corpus only → generated queries → mined negatives → teacher scores → MarginMSE."""

    model: str | None = Field(None, description="base bi-encoder (default: the configured one)")
    teacher: Teacher = Field(
        "hybrid",
        description="who scores the pairs: a cross-encoder (cross_encoder) or, offline, the base "
        "bi-encoder plus BM25",
    )
    cross_encoder: str | None = Field(None, description="sentence-transformers CrossEncoder")
    hybrid_weight: float = Field(1.0, ge=0, le=100, description="BM25's share of the hybrid")
    seed: int = Field(0, ge=0, le=2**31)
    queries: QueryOptions = Field(default_factory=QueryOptions)
    train: TrainOptions = Field(default_factory=TrainOptions)

    llm: BackendConfig = server_llm()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.teacher == "cross-encoder" and not self.cross_encoder:
            raise ValueError("teacher 'cross-encoder' needs cross_encoder (an id or a path)")
        if self.train.eval_steps > self.train.steps:
            raise ValueError("train.eval_steps must not exceed train.steps")
        return self

    def describe(self, data: str) -> dict[str, Any]:
        """The run's request as recorded beside its stages: what the corpus is, the spec, and
        the LLM's provenance (never its key)."""
        return {"data": data, "spec": self.model_dump(exclude={"llm"}), "llm": self.llm.describe()}
