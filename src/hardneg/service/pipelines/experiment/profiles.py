"""Experiment profiles: one budget and one training recipe shared by every arm.

``quick`` is sized for a 2-core CPU (under half an hour on SciFact); ``full`` is the GPU box's
run. Every arm (the control ``none`` and each negative source) trains on the same queries in the
same order, with the same number of mined negatives asked for per query and the same optimizer
steps, repeated over the same training seeds, so differences come from the negatives alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, get_args

from hardneg.miners.llm.prompts import NegativeVariant
from hardneg.miners.spec import METHODS as MINE_METHODS

CONTROL = "none"  # the control arm: the same recipe with in-batch negatives only
ArmMethod = Literal["bm25", "dense", "cross-encoder", "llm", "llm-query-only", "gpl"]
ProfileName = Literal["quick", "full"]
PrecisionChoice = Literal["fp32", "bf16", "auto"]  # hardneg.trainers.encoding.resolve_precision
METHODS: tuple[ArmMethod, ...] = get_args(ArmMethod)
DEFAULT_METHODS: tuple[ArmMethod, ...] = MINE_METHODS  # every mining method, one arm each
LLM_PROMPTS: dict[str, NegativeVariant] = {"llm": "query+positive", "llm-query-only": "query-only"}
"""The LLM arms and their prompt variant (hardneg.miners.llm.prompts.NEGATIVE_VARIANTS)."""
GPL = "gpl"
"""The opt-in GPL-style arm (Wang et al., NAACL 2022): the dense miner's negatives, every pair
scored by the experiment's cross-encoder, and MarginMSE instead of STAR as the comparison stage."""
NEGATIVES_OF: dict[str, str] = {GPL: "dense"}
"""Arms that train on another source's negatives: that source is mined (and probed) once."""


@dataclass(frozen=True)
class Profile:
    name: str
    # budget, the same for every negative source
    train_queries: int | None  # training queries mined and trained on (None: all of them)
    val_queries: int  # training queries held out for validation (at most a fifth of them)
    num_negatives: int  # negatives mined per query
    pool_depth: int  # cross-encoder: BM25 ∪ dense top-N rescored per query
    # training recipe: static-negative STAR (the comparison), then ADORE from its model
    freeze_documents: bool  # "STAR, frozen documents": the query tower only (corpus encoded once)
    batch_size: int
    negatives_per_step: int  # static negatives per query and step (STAR)
    star_steps: int
    star_learning_rate: float
    adore_steps: int
    adore_learning_rate: float
    adore_top_k: int
    max_doc_length: int
    # autocast of every training step; auto: bf16 on a CPU with native bf16, else fp32
    # (hardneg.trainers.encoding.resolve_precision); losses are computed in fp32 regardless
    precision: PrecisionChoice
    eval_steps: int  # validation points on the training curves (0: only at the end)
    # checkpoints inside one training run, every N steps (0: none). Each is the weights and the
    # optimizer's state (271 MB for MiniLM); a quick run lasts about 30 s, so there its recorded
    # stage, not a checkpoint, is what a rerun resumes from
    save_steps: int
    seeds: int  # training repeats per arm (data order, negative sampling)
    # the cross-encoder trained for cross-encoder mining when none is given
    reranker_queries: int  # held-out training queries (never in the budget)
    reranker_steps: int  # a ceiling: training stops once the dev loss stops improving
    reranker_dev_share: float  # share of the reranker's queries held out for its dev loss
    reranker_eval_steps: int  # dev loss every N steps
    reranker_patience: int  # stop after this many dev losses in a row without a new best
    reranker_learning_rate: float
    reranker_negatives: int
    reranker_max_length: int  # tokens per (query, document) pair, training and mining
    # LLM
    llm_max_tokens: int
    llm_max_positive_chars: int  # the positive shown to the LLM is cut to this
    generate_passages: int  # passages to write queries for when the corpus has no train split

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def first_stage(self) -> str:
        """The name of the comparison stage, saying which STAR ran."""
        return "STAR, frozen documents" if self.freeze_documents else "STAR"

    def stage_one_name(self, arm: str) -> str:
        """The name of ``arm``'s comparison stage: STAR, or the gpl arm's MarginMSE."""
        if arm != GPL:
            return self.first_stage
        name = "MarginMSE on cross-encoder margins (GPL-style)"
        return f"{name}, frozen documents" if self.freeze_documents else name


QUICK = Profile(
    name="quick",
    train_queries=512,
    val_queries=100,
    num_negatives=1,
    pool_depth=8,
    freeze_documents=True,
    batch_size=16,
    negatives_per_step=1,
    # chosen on validation (bench/results/experiment-tuning.json; the test split never read):
    # lr 1e-4 beat 5e-5 and 2e-4 for the control and bm25 arms, whose val nDCG@10 rose from
    # 0.657/0.656 at step 40 to 0.681/0.684 at 60-80; the best val checkpoint is kept
    star_steps=80,
    star_learning_rate=1e-4,
    adore_steps=100,
    adore_learning_rate=1e-4,
    adore_top_k=100,
    max_doc_length=256,
    precision="auto",
    eval_steps=20,
    save_steps=0,
    seeds=3,
    reranker_queries=297,
    reranker_steps=60,
    reranker_dev_share=0.2,
    reranker_eval_steps=10,
    reranker_patience=2,
    reranker_learning_rate=1e-4,
    reranker_negatives=3,
    reranker_max_length=128,
    llm_max_tokens=48,
    llm_max_positive_chars=500,
    generate_passages=300,
)

FULL = Profile(
    name="full",
    train_queries=None,
    val_queries=500,
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
    precision="fp32",
    eval_steps=200,
    save_steps=200,
    seeds=3,
    reranker_queries=2000,
    reranker_steps=1000,
    reranker_dev_share=0.1,
    reranker_eval_steps=100,
    reranker_patience=3,
    reranker_learning_rate=2e-5,
    reranker_negatives=7,
    reranker_max_length=320,
    llm_max_tokens=160,
    llm_max_positive_chars=1200,
    generate_passages=5000,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (QUICK, FULL)}  # keys: ProfileName


def get_profile(name: str, **overrides: Any) -> Profile:
    """A named profile, with field overrides (e.g. ``star_steps=10``) for small runs."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r} (available: {', '.join(PROFILES)})")
    profile = PROFILES[name]
    unknown = set(overrides) - set(asdict(profile))
    if unknown:
        raise ValueError(f"unknown profile field(s): {', '.join(sorted(unknown))}")
    return replace(profile, **overrides) if overrides else profile
