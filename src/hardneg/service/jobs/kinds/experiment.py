"""The ``experiment`` job kind: ``hardneg experiment`` on a stored corpus.

The run folder lives in the job's folder, so a retried attempt (a lost worker) continues from the
recorded stages. The report (JSON, Markdown, plots) is published as artifacts and the comparison
lands in the job's stats. The LLM is the server's (its settings), never one named in a request.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hardneg.service.jobs.context import (
    JobContext,
    JobOutcome,
    check_model_refs,
    require_corpus,
)
from hardneg.service.jobs.paths import resolve_model_ref
from hardneg.service.settings import Settings

RUN_FOLDER = "experiment"
REPORT_FILES = ("report.json", "report.md", "metrics.png", "scores.png", "curves.png")
Method = Literal["bm25", "dense", "cross-encoder", "llm", "llm-query-only"]
DEFAULT_METHODS: tuple[Method, ...] = ("bm25", "dense", "cross-encoder", "llm")


class ProfileOverrides(BaseModel):
    """Smaller (or larger) budgets than the named profile's, for trial runs."""

    model_config = ConfigDict(extra="forbid")

    train_queries: int | None = Field(None, ge=1, le=1_000_000)
    num_negatives: int | None = Field(None, ge=1, le=64)
    batch_size: int | None = Field(None, ge=1, le=1024)
    star_steps: int | None = Field(None, ge=1, le=100_000)
    adore_steps: int | None = Field(None, ge=1, le=100_000)
    eval_steps: int | None = Field(None, ge=0, le=100_000)
    val_queries: int | None = Field(None, ge=0, le=1_000_000)
    reranker_queries: int | None = Field(None, ge=1, le=1_000_000)
    reranker_steps: int | None = Field(None, ge=1, le=100_000)
    llm_max_tokens: int | None = Field(None, ge=8, le=1024)


class ExperimentParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profile: Literal["quick", "full"] = "quick"
    methods: list[Method] = Field(
        default_factory=lambda: list(DEFAULT_METHODS),
        min_length=1,
        description="negative sources, each an arm beside the control arm none (always run); "
        "llm shows the LLM the query and its positive, llm-query-only the query alone",
    )
    model: str | None = Field(None, description="base bi-encoder (default: the server's)")
    cross_encoder: str | None = Field(
        None, description="cross-encoder; default: one trained on held-out training queries"
    )
    seed: int = Field(13, ge=0, le=2**31, description="seed of the query roles")
    seeds: int | None = Field(
        None, ge=1, le=20, description="training repeats per arm (null: the profile's)"
    )
    queries: Literal["human", "generated"] = Field(
        "human", description="train on the train split, or on LLM-written queries"
    )
    overrides: ProfileOverrides = Field(default_factory=ProfileOverrides)

    def server_check(self, settings: Settings) -> None:
        check_model_refs(self, ("model", "cross_encoder"), settings)


def run(params: ExperimentParams, context: JobContext) -> JobOutcome:
    from hardneg.miners.llm.backends import BackendConfig
    from hardneg.service.pipelines.experiment.profiles import get_profile
    from hardneg.service.pipelines.experiment.run import ExperimentRequest, run_experiment

    corpus = require_corpus(context)
    settings = context.settings
    overrides = params.overrides.model_dump(exclude_none=True)
    request = ExperimentRequest(
        data=str(corpus.path),
        profile=get_profile(params.profile, **overrides),
        methods=tuple(dict.fromkeys(params.methods)),
        model=resolve_model_ref(params.model or settings.model, settings),
        cross_encoder=resolve_model_ref(params.cross_encoder, settings)
        if params.cross_encoder
        else None,
        llm=BackendConfig(
            backend=settings.llm_backend,
            model=settings.llm_model,
            base_url=settings.llm_base_url,
            api_key_env=settings.llm_api_key_env,
            timeout_s=settings.llm_timeout_seconds,
            max_retries=settings.llm_max_retries,
            concurrency=settings.llm_concurrency,
        ),
        seed=params.seed,
        seeds=params.seeds,
        queries=params.queries,
    )
    folder = context.output_dir / RUN_FOLDER
    if (folder / "stages").is_dir():
        context.event(f"attempt {context.attempt} continues from the recorded stages")
    result = run_experiment(request, settings, folder, context.progress, context.cache)
    report = result.report
    keys = ("dataset", "profile", "queries", "stages", "budget", "baselines", "methods")
    verdict = ("best_method", "top_arm", "indistinguishable", "false_negative_probe")
    stats = {key: report[key] for key in (*keys, *verdict)}
    stats |= {"wall_seconds": report["wall_seconds"], "trims": report["trims"]}
    artifacts = {name: folder / name for name in REPORT_FILES if (folder / name).is_file()}
    return JobOutcome(stats=stats, artifacts=artifacts)
