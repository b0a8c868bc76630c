"""What an experiment is asked to do (:class:`ExperimentSpec`): the corpus, the profile and its
overrides, the arms, the seeds, the LLM. ``hardneg experiment`` and ``POST /v1/jobs/experiment``
both take it; it lives beside the profiles it names."""

from __future__ import annotations

from pydantic import Field, field_validator

from hardneg.core.spec import Spec, server_owned
from hardneg.miners.llm.backends import BackendConfig, server_llm
from hardneg.service.pipelines.experiment.data import QuerySource
from hardneg.service.pipelines.experiment.profiles import (
    CONTROL,
    DEFAULT_METHODS,
    ArmMethod,
    PrecisionChoice,
    Profile,
    ProfileName,
    get_profile,
)


class ProfileOverrides(Spec):
    """Smaller (or larger) budgets than the named profile's, for trial runs: any field of
    :class:`Profile` but its name (``tests/test_specs.py`` checks that they match)."""

    train_queries: int | None = Field(None, ge=1, le=1_000_000)
    val_queries: int | None = Field(None, ge=0, le=1_000_000)
    num_negatives: int | None = Field(None, ge=1, le=64)
    pool_depth: int | None = Field(None, ge=1, le=1000)
    freeze_documents: bool | None = None
    batch_size: int | None = Field(None, ge=1, le=1024)
    negatives_per_step: int | None = Field(None, ge=1, le=64)
    star_steps: int | None = Field(None, ge=1, le=100_000)
    star_learning_rate: float | None = Field(None, gt=0, le=1)
    adore_steps: int | None = Field(None, ge=1, le=100_000)
    adore_learning_rate: float | None = Field(None, gt=0, le=1)
    adore_top_k: int | None = Field(None, ge=1, le=10_000)
    max_doc_length: int | None = Field(None, ge=8, le=8192)
    precision: PrecisionChoice | None = None
    eval_steps: int | None = Field(None, ge=0, le=100_000)
    save_steps: int | None = Field(None, ge=0, le=100_000)
    seeds: int | None = Field(None, ge=1, le=20)
    reranker_queries: int | None = Field(None, ge=1, le=1_000_000)
    reranker_steps: int | None = Field(None, ge=1, le=100_000)
    reranker_dev_share: float | None = Field(None, gt=0, lt=1)
    reranker_eval_steps: int | None = Field(None, ge=1, le=100_000)
    reranker_patience: int | None = Field(None, ge=0, le=1000)
    reranker_learning_rate: float | None = Field(None, gt=0, le=1)
    reranker_negatives: int | None = Field(None, ge=1, le=64)
    reranker_max_length: int | None = Field(None, ge=8, le=8192)
    llm_max_tokens: int | None = Field(None, ge=8, le=1024)
    llm_max_positive_chars: int | None = Field(None, ge=1, le=100_000)
    generate_passages: int | None = Field(None, ge=1, le=1_000_000)


class ExperimentSpec(Spec):
    data: str = Field(
        "scifact",
        description="a BEIR folder or dataset name",
        json_schema_extra=server_owned("the job's corpus"),
    )
    profile: ProfileName = Field("quick", description="budget and recipe")
    methods: tuple[ArmMethod, ...] = Field(
        DEFAULT_METHODS,
        min_length=1,
        description="negative sources, each an arm beside the control arm none (always run); "
        "llm shows the LLM the query and its positive, llm-query-only the query alone; gpl "
        "(opt-in) trains MarginMSE on the cross-encoder's scores of the dense negatives",
    )
    model: str | None = Field(None, description="base bi-encoder (default: the settings')")
    cross_encoder: str | None = Field(
        None, description="cross-encoder; default: one trained on held-out training queries"
    )
    seed: int = Field(
        13, ge=0, le=2**31, description="seed of the query roles; training seeds are seed, seed+1"
    )
    seeds: int | None = Field(
        None, ge=1, le=20, description="training repeats per arm (null: the profile's)"
    )
    queries: QuerySource = Field(
        "human", description="train on the train split, or on LLM-written queries"
    )
    overrides: ProfileOverrides = Field(default_factory=ProfileOverrides)
    llm: BackendConfig = server_llm()

    @field_validator("methods")
    @classmethod
    def _distinct(cls, methods: tuple[ArmMethod, ...]) -> tuple[ArmMethod, ...]:
        return tuple(dict.fromkeys(methods))

    @property
    def recipe(self) -> Profile:
        """The named profile with the overrides applied."""
        return get_profile(self.profile, **self.overrides.model_dump(exclude_none=True))

    @property
    def training_seeds(self) -> list[int]:
        count = self.seeds if self.seeds is not None else self.recipe.seeds
        return [self.seed + i for i in range(count)]

    @property
    def arms(self) -> tuple[str, ...]:
        return (CONTROL, *self.methods)
