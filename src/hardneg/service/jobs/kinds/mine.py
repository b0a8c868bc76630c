"""The ``mine`` job kind: hard negatives for one split of a corpus (``pipelines.mine``).

The pipeline writes its output folder whole or not at all; every file in it is an artifact
(``mined.jsonl`` is the one paged by ``/results``), and the folder is also offered as
``mined.tar.gz``. Candidate lists (and LLM outputs, for ``llm``) go through the Redis cache.
Model references are the API's (hub id, ``job:<id>``, or a path under the allowed roots); the
``llm`` method uses the server's LLM settings, never an endpoint named in the request.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hardneg.miners.filters import FilterConfig
from hardneg.service.jobs.context import (
    JobContext,
    JobOutcome,
    check_model_refs,
    require_corpus,
)
from hardneg.service.jobs.paths import resolve_model_ref
from hardneg.service.settings import Settings

MINED_FOLDER = "mined"
MINED_FILE = "mined.jsonl"
Method = Literal["bm25", "dense", "cross-encoder", "llm"]
Layout = Literal["triplet", "n-tuple", "labeled-list"]
Format = Literal["jsonl", "parquet"]
ALL_LAYOUTS: tuple[Layout, ...] = ("triplet", "n-tuple", "labeled-list")
ALL_FORMATS: tuple[Format, ...] = ("jsonl", "parquet")


class MineParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    split: str = Field("train", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    method: Method = "bm25"
    model: str | None = Field(None, description="bi-encoder (dense; the cross-encoder's pool)")
    cross_encoder: str | None = Field(None, description="cross-encoder (method cross-encoder)")
    cross_encoder_max_length: int | None = Field(None, ge=8, le=4096)
    # filters (hardneg.miners.filters.FilterConfig)
    num_negatives: int = Field(3, ge=1, le=200)
    range_min: int = Field(0, ge=0, le=10_000, description="skip the first N candidates")
    range_max: int | None = Field(None, ge=1, le=10_000)
    max_score: float | None = None
    min_score: float | None = None
    absolute_margin: float | None = None
    relative_margin: float | None = None
    sampling: Literal["top", "random"] = "top"
    seed: int = Field(0, ge=0)
    min_negatives: int = Field(1, ge=1)
    dedupe: bool = True
    # retrievers
    k1: float = Field(1.5, ge=0)
    b: float = Field(0.75, ge=0, le=1)
    index: Literal["flat", "ivf", "hnsw"] = "flat"
    batch_size: int = Field(64, ge=1, le=4096)
    max_length: int | None = Field(None, ge=8, le=8192)
    query_prompt: str = Field("", max_length=512)
    corpus_prompt: str = Field("", max_length=512)
    pool_depth: int = Field(30, ge=1, le=1000)
    denoise_margin: float | None = 0.0
    layouts: list[Layout] = Field(default_factory=lambda: list(ALL_LAYOUTS))
    formats: list[Format] = Field(default_factory=lambda: list(ALL_FORMATS))
    llm_max_queries: int | None = Field(None, ge=1, description="llm: mine this many queries")

    @model_validator(mode="after")
    def _filters_are_consistent(self) -> MineParams:
        self.filters()  # FilterConfig raises ValueError on contradictions: a 422 here
        return self

    def filters(self) -> FilterConfig:
        return FilterConfig(
            num_negatives=self.num_negatives,
            range_min=self.range_min,
            range_max=self.range_max,
            max_score=self.max_score,
            min_score=self.min_score,
            absolute_margin=self.absolute_margin,
            relative_margin=self.relative_margin,
            sampling=self.sampling,
            seed=self.seed,
            min_negatives=self.min_negatives,
            dedupe=self.dedupe,
        )

    def server_check(self, settings: Settings) -> None:
        check_model_refs(self, ("model", "cross_encoder"), settings)


def llm_options(settings: Settings, max_queries: int | None) -> dict[str, object]:
    """The ``llm_*`` job options of ``miners.llm``: the server's backend, never the client's."""
    options: dict[str, object] = {
        "llm_backend": settings.llm_backend,
        "llm_base_url": settings.llm_base_url,
        "llm_model": settings.llm_model,
        "llm_api_key_env": settings.llm_api_key_env,
        "llm_timeout_s": settings.llm_timeout_seconds,
        "llm_max_retries": settings.llm_max_retries,
        "llm_concurrency": settings.llm_concurrency,
        "llm_max_queries": max_queries,
    }
    return {key: value for key, value in options.items() if value is not None}


def run(params: MineParams, context: JobContext) -> JobOutcome:
    from hardneg.core.bm25 import BM25Params
    from hardneg.core.dense import DenseIndexConfig
    from hardneg.service.pipelines.mine import MineRequest, run_mining

    corpus = require_corpus(context)
    settings = context.settings

    def model_ref(ref: str | None) -> str | None:
        return resolve_model_ref(ref, settings) if ref else None

    request = MineRequest(
        data=str(corpus.path),
        split=params.split,
        method=params.method,
        model=model_ref(params.model),
        cross_encoder=model_ref(params.cross_encoder),
        cross_encoder_max_length=params.cross_encoder_max_length,
        filters=params.filters(),
        bm25=BM25Params(k1=params.k1, b=params.b),
        index=DenseIndexConfig(kind=params.index),
        batch_size=params.batch_size,
        max_length=params.max_length,
        query_prompt=params.query_prompt,
        corpus_prompt=params.corpus_prompt,
        pool_depth=params.pool_depth,
        denoise_margin=params.denoise_margin,
        layouts=tuple(params.layouts),
        formats=tuple(params.formats),
        options=llm_options(settings, params.llm_max_queries) if params.method == "llm" else {},
    )
    folder = context.output_dir / MINED_FOLDER
    result = run_mining(request, settings, folder, context.progress, context.cache)
    artifacts = {path.name: path for path in result.files.values()}
    artifacts[MINED_FOLDER] = folder  # published last, as mined.tar.gz
    return JobOutcome(
        stats=dict(result.stats) | {"method": params.method, "seconds": dict(result.seconds)},
        artifacts=artifacts,
        results=MINED_FILE,
    )
