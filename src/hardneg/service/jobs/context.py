"""What a job kind's pipeline function receives and returns."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from hardneg.core.cache import Cache
from hardneg.core.progress import Progress
from hardneg.core.workspace import Workspace
from hardneg.service.jobs.corpora import CorpusRecord, CorpusStore
from hardneg.service.jobs.paths import PathRefusedError, resolve_model_ref
from hardneg.service.pipelines.context import PipelineContext
from hardneg.service.settings import Settings

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class JobContext:
    """Everything a pipeline run gets besides its params."""

    job_id: str
    attempt: int
    settings: Settings
    workspace: Workspace
    corpus: CorpusRecord | None
    output_dir: Path  # write artifacts here, atomically (hardneg.core.atomic)
    checkpoint_dir: Path  # survives a lost worker: a retried attempt resumes from it
    progress: Progress  # raises JobCancelled when the job is cancelled
    cache: Cache
    corpora: CorpusStore
    publish: Callable[[Mapping[str, object]], None]  # interim stats (e.g. a metrics history)
    event: Callable[[str], None]  # adds a line to the record's events (this attempt only)

    def pipeline(self, output: Path) -> PipelineContext:
        """What a pipeline writing into ``output`` runs with: this job's settings, progress
        (so a cancel stops it) and Redis cache."""
        return PipelineContext(self.settings, output, self.progress, self.cache)


@dataclass(frozen=True)
class JobOutcome:
    """What a finished run hands back: stats for the record and artifacts to publish."""

    stats: Mapping[str, object]
    artifacts: Mapping[str, Path] = field(default_factory=dict)  # name -> file or folder
    results: str | None = None  # the artifact name (a JSONL file) served page by page


class ParamError(ValueError):
    """A parameter the server refuses (checked with its settings); names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def check_model_refs(params: object, fields: tuple[str, ...], settings: Settings) -> None:
    """Refuse, naming the field, a model reference the worker would refuse (a path outside the
    allowed roots); ``None`` fields are skipped."""
    for field_name in fields:
        ref = getattr(params, field_name)
        if ref is not None:
            try:
                resolve_model_ref(ref, settings)
            except PathRefusedError as exc:
                raise ParamError(field_name, str(exc)) from None


def resolve_model_refs(
    spec: M, fields: tuple[str, ...], settings: Settings, default: str | None = None
) -> M:
    """``spec`` with its model references (``job:<id>``, allowed paths, hub ids) resolved; the
    field ``default`` names, when unset, is the settings' model first."""
    if default is not None and getattr(spec, default) is None:
        spec = spec.model_copy(update={default: settings.model})
    refs = {name: getattr(spec, name) for name in fields}
    update = {name: resolve_model_ref(ref, settings) for name, ref in refs.items() if ref}
    return spec.model_copy(update=update)


def run_folder(context: JobContext, name: str) -> Path:
    """The folder of a run that records its stages (``stages/``) inside the job's folder: a
    retried attempt continues from them, and says so in the job's events."""
    folder = context.output_dir / name
    if (folder / "stages").is_dir():
        context.event(f"attempt {context.attempt} continues from the recorded stages")
    return folder


def require_corpus(context: JobContext) -> CorpusRecord:
    if context.corpus is None:
        raise ValueError("this job kind needs a corpus ('corpus_id')")
    return context.corpus
