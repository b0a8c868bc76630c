"""The experiment's recorded stages: one small dataclass per kind of stage, written as JSON under
``stages/`` when the stage finishes and read back (checked by pydantic) when a rerun finds it.

Every record carries ``stage_seconds``, the time the stage took when it ran. ``StagedRun`` is
what a run that records stages (the experiment, an adapt run) sets up first.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from pydantic import TypeAdapter

from hardneg.core.atomic import write_text_atomic
from hardneg.core.progress import Progress
from hardneg.service.pipelines.context import PipelineContext

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class StageRecord:
    stage_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls: type[R], data: Mapping[str, Any]) -> R:
        return TypeAdapter(cls).validate_python(data)


R = TypeVar("R", bound=StageRecord)


@dataclass(frozen=True, kw_only=True)
class Mined(StageRecord):
    """One source's mining run: the mined file, its stats and sidecars."""

    mined: str
    stats_file: str
    histogram: str
    stats: dict[str, Any]
    seconds: dict[str, float]


@dataclass(frozen=True, kw_only=True)
class Probe(StageRecord):
    """The false-negative probe of one source (``rate`` None where it does not apply)."""

    hidden_positives: int
    returned: int | None
    rate: float | None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "note" or v is not None}


@dataclass(frozen=True, kw_only=True)
class Arm(StageRecord):
    """One arm's training file: every budget query, in one order."""

    training_file: str
    queries_trained: int
    query_ids_sha: str
    negatives_histogram: dict[str, int]
    teacher: dict[str, Any] | None = None  # who scored its pairs (the gpl arm's cross-encoder)


@dataclass(frozen=True, kw_only=True)
class Trained(StageRecord):
    """One training run: its output folder and the trainer's summary."""

    output: str
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return int(self.summary.get("steps", 0))


@dataclass(frozen=True, kw_only=True)
class Scored(StageRecord):
    """Test-split metrics of one model (or BM25): the means and the per-query scores."""

    metrics: dict[str, float]
    num_queries: int
    per_query: dict[str, dict[str, float]]


@dataclass(frozen=True, kw_only=True)
class Distributions(StageRecord):
    """Per source: the base model's cosines of (query, positive) and (query, negative) pairs."""

    model: str
    similarity: str
    methods: dict[str, dict[str, list[float]]]


@dataclass(frozen=True)
class Runs:
    """Every stage of one experiment, by source or arm (and seed, and training stage)."""

    mined: dict[str, Mined]
    probes: dict[str, Probe]
    arms: dict[str, Arm]
    trained: dict[str, dict[int, dict[str, Trained]]]  # arm -> seed -> "star" / "star_adore"
    tested: dict[str, dict[int, dict[str, Scored]]]


class Stages:
    """Finished stages as JSON files: a rerun returns the recorded result instead of redoing it."""

    def __init__(self, folder: Path, progress: Progress) -> None:
        self.folder, self.progress = folder, progress
        self.seconds: dict[str, float] = {}

    def recorded(self, name: str) -> bool:
        return (self.folder / f"{name}.json").is_file()

    def run(self, name: str, kind: type[R], work: Callable[[], R]) -> R:
        path = self.folder / f"{name}.json"
        if path.is_file():
            recorded = kind.from_json(json.loads(path.read_text()))
            logger.info("stage %s: reusing the recorded result", name)
            self.seconds[name] = recorded.stage_seconds
            return recorded
        logger.info("stage %s", name)
        self.progress(0, 1, name)
        started = time.perf_counter()
        result = replace(work(), stage_seconds=round(time.perf_counter() - started, 2))
        self.seconds[name] = result.stage_seconds
        write_text_atomic(path, json.dumps(result.to_json(), indent=2, default=str))
        self.progress(1, 1, name)
        return result


class StagedRun:
    """What a run that records its stages (an experiment, an adapt run) works with: its
    context, the data directory, the cache, the bi-encoder it starts from and its ``Stages``."""

    def __init__(self, context: PipelineContext, model: str | None) -> None:
        from hardneg.core.workspace import Workspace

        self.cache = context.cache_or_disk()
        self.context = replace(context, cache=self.cache)  # the pipelines it calls share it
        self.settings, self.output = context.settings, context.output
        self.progress = context.progress
        self.workspace = Workspace(self.settings.home)
        self.model = model or self.settings.model
        self.stages = Stages(self.output / "stages", self.progress)
