"""Progress reporting without a UI dependency.

Long operations accept a ``Progress`` callback and call it as work completes. A callback may
raise (e.g. the service's ``JobCancelled``) to stop the work; callers clean up temp files.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def __call__(self, done: int, total: int, stage: str) -> None: ...


def no_progress(done: int, total: int, stage: str) -> None:
    """The default callback: report nothing."""
