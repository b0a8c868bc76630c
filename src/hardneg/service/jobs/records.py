"""The job record: what the API shows and the workers update, stored as a Redis hash."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Literal, cast

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JOB_STATES: tuple[JobState, ...] = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

_JSON_FIELDS = frozenset({"params", "stats", "artifacts", "events"})
_INT_FIELDS = frozenset({"attempt", "max_attempts", "done", "total", "pid"})
_FLOAT_FIELDS = frozenset(
    {"created_at", "updated_at", "started_at", "finished_at", "cancel_requested_at"}
)


def new_job_id() -> str:
    return f"j{uuid.uuid4().hex}"


@dataclass(frozen=True)
class JobRecord:
    id: str
    kind: str
    params: dict[str, object]
    corpus_id: str | None
    dedupe_key: str
    max_attempts: int
    state: JobState = "queued"
    attempt: int = 1
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    stage: str = "queued"
    done: int = 0
    total: int = 0
    stats: dict[str, object] = field(default_factory=dict)
    error: str | None = None
    artifacts: dict[str, object] = field(default_factory=dict)
    results: str | None = None
    worker: str | None = None
    pid: int | None = None
    cancel_requested_at: float | None = None
    events: list[str] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def rq_id(self, queue_name: str) -> str:
        """The RQ job id of this attempt (RQ allows letters, digits, '_' and '-')."""
        return f"{queue_name}-{self.id}-a{self.attempt}".replace(".", "_")

    def with_event(self, message: str) -> JobRecord:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return replace(self, events=[*self.events, f"{stamp} {message}"])

    def to_hash(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in asdict(self).items():
            if name in _JSON_FIELDS:
                out[name] = json.dumps(value, default=str)
            else:
                out[name] = "" if value is None else str(value)
        return out

    @classmethod
    def from_hash(cls, raw: Mapping[str, str]) -> JobRecord:
        values: dict[str, object] = {}
        for spec in fields(cls):
            if spec.name not in raw:
                continue
            text = raw[spec.name]
            if spec.name in _JSON_FIELDS:
                values[spec.name] = json.loads(text) if text else None
            elif spec.name in _INT_FIELDS:
                values[spec.name] = int(text) if text else None
            elif spec.name in _FLOAT_FIELDS:
                values[spec.name] = float(text) if text else None
            else:
                values[spec.name] = text if text or spec.name == "stage" else None
        values["state"] = cast(JobState, values.get("state") or "queued")
        for name in ("stats", "artifacts", "params"):
            values[name] = values.get(name) or {}
        values["events"] = values.get("events") or []
        for name in ("done", "total"):
            values[name] = values.get(name) or 0
        return cls(**values)  # type: ignore[arg-type]
