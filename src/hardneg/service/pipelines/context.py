"""What a pipeline runs with besides its request: the settings, the folder it writes, where its
progress goes and the cache.

Every pipeline (mine, generate-queries, experiment, adapt) takes these four, and the runs that
record stages hand them on to the pipelines they call with a folder of their own, so they travel
as one value: the CLI builds one per command, a job builds one from its ``JobContext``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from hardneg.core.progress import Progress, no_progress

if TYPE_CHECKING:  # the workspace imports FAISS: not for `hardneg experiment --help`
    from hardneg.core.cache import Cache
    from hardneg.service.settings import Settings


@dataclass(frozen=True)
class PipelineContext:
    """``cache`` is what the service passes (Redis); ``None`` means the data directory's disk
    cache (:meth:`cache_or_disk`), which is what the CLI uses."""

    settings: Settings
    output: Path
    progress: Progress = no_progress
    cache: Cache | None = None

    def into(self, output: Path) -> PipelineContext:
        """The same run writing into ``output``: a pipeline that one stage of it calls."""
        return replace(self, output=output)

    def cache_or_disk(self) -> Cache:
        """``cache``, else a ``DiskCache`` under the data directory."""
        if self.cache is not None:
            return self.cache
        from hardneg.core.workspace import Workspace
        from hardneg.miners.disk_cache import DiskCache

        return DiskCache(Workspace(self.settings.home).root / "cache")
