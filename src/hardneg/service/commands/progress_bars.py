"""A rich progress bar that satisfies core's ``Progress`` callback protocol."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

from hardneg.service.pipelines.context import PipelineContext

if TYPE_CHECKING:
    from hardneg.service.settings import Settings


class ProgressBars:
    """One bar per stage name; use as a context manager and pass the instance as ``progress``."""

    def __init__(self, console: Console | None = None) -> None:
        self._bars = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> ProgressBars:
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.stop()

    def __call__(self, done: int, total: int, stage: str) -> None:
        task = self._tasks.get(stage)
        if task is None:
            task = self._bars.add_task(stage, total=total or None)
            self._tasks[stage] = task
        self._bars.update(task, completed=done, total=total or None)


@contextmanager
def cli_context(console: Console, settings: Settings, output: Path) -> Iterator[PipelineContext]:
    """A pipeline run by a command: into ``output``, its progress as bars on ``console``, the
    data directory's disk cache."""
    with ProgressBars(console) as progress:
        yield PipelineContext(settings, output, progress)
