"""Turn a user's ``--data`` argument (a folder or a BEIR dataset name) into a loaded split."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from hardneg.core.beir import BeirSplit, load_split
from hardneg.core.download import DEFAULT_TIMEOUT, download_beir, validate_dataset_name
from hardneg.core.progress import Progress, no_progress
from hardneg.core.workspace import Workspace

logger = logging.getLogger(__name__)


def resolve_dataset(
    data: str,
    workspace: Workspace,
    base_url: str,
    search_dirs: Sequence[Path] = (),
    progress: Progress = no_progress,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Find the BEIR folder ``data`` names.

    An existing folder is used as is. Anything else is a dataset name, looked up in the
    workspace's datasets folder, then in ``search_dirs``, and downloaded once if still missing.
    """
    folder = Path(data).expanduser()
    if folder.is_dir():
        return folder
    if "/" in data or "\\" in data or data.startswith("."):
        raise FileNotFoundError(f"no dataset folder at {data!r}")
    name = validate_dataset_name(data)
    for root in (workspace.datasets, *search_dirs):
        candidate = root.expanduser() / name
        if candidate.is_dir():
            logger.info("using %s from %s", name, candidate)
            return candidate
    return download_beir(name, workspace.datasets, base_url, progress=progress, timeout=timeout)


def load_dataset_split(
    data: str,
    split: str,
    workspace: Workspace,
    base_url: str,
    search_dirs: Sequence[Path] = (),
    progress: Progress = no_progress,
    timeout: float = DEFAULT_TIMEOUT,
) -> BeirSplit:
    folder = resolve_dataset(data, workspace, base_url, search_dirs, progress, timeout)
    return load_split(folder, split)
