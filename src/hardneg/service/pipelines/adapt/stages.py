"""The adapt run's recorded stages: one small dataclass each, written as JSON under ``stages/``
and read back (checked by pydantic) by a rerun, through the experiment's
:class:`~hardneg.service.pipelines.experiment.stages.Stages` runner. The training stage is the
experiment's :class:`~hardneg.service.pipelines.experiment.stages.Trained`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hardneg.service.pipelines.experiment.stages import StageRecord


@dataclass(frozen=True, kw_only=True)
class GeneratedQueries(StageRecord):
    """The generated queries' BEIR folder, what the filters kept, and the train/val cut."""

    folder: str
    passages: int  # passages the LLM wrote for
    report: dict[str, Any]  # DropReport.to_json(): total, kept, dropped (by reason), examples
    generation: dict[str, Any]  # GenerationStats.to_json()
    prompt: dict[str, Any]  # which template, and its examples
    llm: dict[str, Any]  # the backend's provenance and its fingerprint
    queries: int
    train_queries: int
    val_queries: int
    train_passages: int
    val_passages: int

    @property
    def total(self) -> int:
        return int(self.report["total"])

    @property
    def kept(self) -> int:
        return int(self.report["kept"])


@dataclass(frozen=True, kw_only=True)
class MinedNegatives(StageRecord):
    mined: str  # the triplet JSONL of the training queries
    stats: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class TeacherScores(StageRecord):
    scored: str  # the mined file with every (query, document) pair scored by the teacher
    rows: int
    teacher: dict[str, Any]  # the scorer's description
