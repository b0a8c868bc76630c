"""What an experiment is asked to do: the corpus, the profile, the arms, the seeds."""

from __future__ import annotations

from dataclasses import dataclass, field

from hardneg.miners.llm.backends import BackendConfig
from hardneg.service.pipelines.experiment.data import QuerySource
from hardneg.service.pipelines.experiment.profiles import (
    CONTROL,
    DEFAULT_METHODS,
    METHODS,
    QUICK,
    Profile,
)


@dataclass(frozen=True)
class ExperimentRequest:
    data: str = "scifact"  # a BEIR folder or dataset name
    profile: Profile = QUICK
    methods: tuple[str, ...] = DEFAULT_METHODS  # negative sources; the control arm always runs
    model: str | None = None  # base bi-encoder (default: settings.model)
    cross_encoder: str | None = None  # None: train one on held-out training queries
    llm: BackendConfig = field(default_factory=BackendConfig)
    seed: int = 13  # the budget's sample; training seeds are seed, seed + 1, ...
    seeds: int | None = None  # training repeats per arm (None: the profile's)
    queries: QuerySource = "human"  # "generated": train on LLM-written queries

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"unknown or no methods {unknown}; choose among {', '.join(METHODS)}")
        if self.seeds is not None and self.seeds < 1:
            raise ValueError("seeds must be at least 1")

    @property
    def training_seeds(self) -> list[int]:
        count = self.seeds if self.seeds is not None else self.profile.seeds
        return [self.seed + i for i in range(count)]

    @property
    def arms(self) -> tuple[str, ...]:
        return (CONTROL, *dict.fromkeys(self.methods))
