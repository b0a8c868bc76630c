"""Request and response models of the REST API."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Generic, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hardneg.core.spec import Section, flat_dump
from hardneg.service.jobs.corpora import NAME_PATTERN, CorpusRecord, CorpusSource
from hardneg.service.jobs.records import JobRecord, JobState

MAX_OFFSET = 2**31 - 1  # paging offsets: far past any store, inside Redis's range arguments
T = TypeVar("T")
P = TypeVar("P", bound=BaseModel)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    offset: int
    limit: int


class ArtifactView(BaseModel):
    path: str
    media_type: str
    bytes: int


def _shared_fields(view: type[BaseModel], record: object) -> dict[str, Any]:
    """The record's attributes that the view shows under the same name (pydantic checks them)."""
    return {name: getattr(record, name) for name in view.model_fields if hasattr(record, name)}


class JobView(BaseModel):
    id: str
    kind: str
    state: JobState
    stage: str
    done: int
    total: int
    progress: float | None = Field(None, description="done / total, when the total is known")
    attempt: int
    max_attempts: int
    corpus_id: str | None
    params: dict[str, Any]
    stats: dict[str, Any]
    error: str | None
    cancel_requested: bool
    worker: str | None = Field(None, description="the worker running the current attempt")
    pid: int | None = Field(None, description="process id of the current attempt's work horse")
    artifacts: dict[str, ArtifactView]
    results: str | None = Field(None, description="artifact served by /results, page by page")
    events: list[str]
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float
    deduplicated: bool = Field(False, description="an identical earlier job was returned")

    @classmethod
    def of(cls, record: JobRecord, deduplicated: bool = False) -> JobView:
        progress = min(record.done / record.total, 1.0) if record.total > 0 else None
        if record.state == "succeeded":
            progress = 1.0
        derived = {
            "progress": progress,
            "cancel_requested": record.cancel_requested_at is not None,
            "deduplicated": deduplicated,
        }
        return cls.model_validate(_shared_fields(cls, record) | derived)


INT64 = 2**63


def unsafe_number(value: object, path: str) -> str | None:
    """Where a JSON-like value holds a non-finite float (JSON's NaN or Infinity, which Python's
    parser accepts) or an integer beyond 64 bits; None when it holds neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, int):
        return None if -INT64 <= value < INT64 else path
    items: Any
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if (found := unsafe_number(item, f"{path}.{key}")) is not None:
            return found
    return None


class JobSubmit(BaseModel, Generic[P]):
    model_config = ConfigDict(extra="forbid")

    corpus_id: str | None = Field(None, description="the corpus the job reads")
    params: P
    force: bool = Field(False, description="run again even if an identical job exists")

    @model_validator(mode="after")
    def _numbers_are_finite(self) -> Self:
        # flat, as the API's JSON names the fields (params.seed, not params.filters.seed)
        params = self.params
        dumped = flat_dump(params) if isinstance(params, Section) else params.model_dump()
        found = unsafe_number(dumped, "params")
        if found is not None:
            raise ValueError(f"{found} must be a finite number that fits in 64 bits")
        return self


class CorpusView(BaseModel):
    id: str
    name: str
    source: CorpusSource
    state: str
    documents: int
    queries: int
    splits: dict[str, int]
    fingerprint: str | None
    version: str | None
    job_id: str | None
    error: str | None
    created_at: float
    updated_at: float

    @classmethod
    def of(cls, record: CorpusRecord, job: JobRecord | None = None) -> CorpusView:
        state, error = record.state, record.error
        if state == "pending" and job is not None and job.state in ("failed", "cancelled"):
            state, error = "failed", job.error or f"registration job {job.state}"
        return cls.model_validate(_shared_fields(cls, record) | {"state": state, "error": error})


class RegisterBeir(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="BEIR dataset name, e.g. scifact")
    md5: str | None = Field(None, pattern=r"^[0-9a-f]{32}$", description="expected zip md5")


class RegisterPath(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="absolute server-side BEIR folder under an allowed root")
    name: str | None = Field(None, pattern=NAME_PATTERN)


class ResultsPage(BaseModel):
    items: list[dict[str, Any]]
    total: int
    offset: int
    limit: int


class Readiness(BaseModel):
    redis: bool
    workers: int
    ready: bool
