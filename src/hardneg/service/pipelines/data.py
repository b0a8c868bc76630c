"""Turn a user's ``--data`` argument (a folder or a BEIR dataset name) into a loaded split."""

from __future__ import annotations

from pathlib import Path

from hardneg.core.beir import BeirSplit, load_split
from hardneg.core.download import download_beir, validate_dataset_name
from hardneg.core.progress import Progress, no_progress
from hardneg.core.workspace import Workspace


def resolve_dataset(
    data: str, workspace: Workspace, base_url: str, progress: Progress = no_progress
) -> Path:
    """An existing folder is used as is; anything else is a BEIR name, downloaded once."""
    folder = Path(data).expanduser()
    if folder.is_dir():
        return folder
    if "/" in data or "\\" in data or data.startswith("."):
        raise FileNotFoundError(f"no dataset folder at {data!r}")
    name = validate_dataset_name(data)
    return download_beir(name, workspace.datasets, base_url=base_url, progress=progress)


def load_dataset_split(
    data: str, split: str, workspace: Workspace, base_url: str, progress: Progress = no_progress
) -> BeirSplit:
    return load_split(resolve_dataset(data, workspace, base_url, progress), split)
