"""Turn a user's ``--data`` argument (a folder or a BEIR dataset name) into a loaded split;
claim the output folder a pipeline writes."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hardneg.core.atomic import write_text_atomic
from hardneg.core.beir import BeirSplit, load_split
from hardneg.core.download import DEFAULT_TIMEOUT, download_beir, validate_dataset_name
from hardneg.core.progress import Progress, no_progress
from hardneg.core.workspace import Workspace
from hardneg.service.settings import Settings

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


def find_dataset(data: str, settings: Settings, progress: Progress = no_progress) -> Path:
    """:func:`resolve_dataset` as the settings say: their data directory's datasets, then
    ``data_dirs``, then a download from their BEIR mirror within their timeout."""
    workspace = Workspace(settings.home)
    return resolve_dataset(
        data,
        workspace,
        settings.beir_base_url,
        settings.data_dirs,
        progress,
        settings.download_timeout_seconds,
    )


def dataset_split(
    data: str, split: str, settings: Settings, progress: Progress = no_progress
) -> BeirSplit:
    """One split of the dataset ``data`` names (:func:`find_dataset`)."""
    return load_split(find_dataset(data, settings, progress), split)


def refuse_foreign_output(output: Path, marker: str) -> None:
    """Refuse to write into anything but an empty folder or an earlier output of the same
    operation (a folder holding ``marker``)."""
    if output.is_file():
        raise FileExistsError(f"output {output} is a file; give a folder path")
    if output.is_dir() and any(output.iterdir()) and not (output / marker).is_file():
        raise FileExistsError(
            f"output folder {output} is not empty and holds no {marker}; "
            "choose a new or empty folder"
        )


def claim_output(output: Path, record: str, request: Mapping[str, Any], what: str) -> None:
    """Create ``output`` for a run that records its stages, writing ``request`` (JSON) to its
    ``record`` file; accept a folder that holds the same request (the run continues), refuse
    one with another request or anything else (``what`` names the run in the message)."""
    wanted = json.loads(json.dumps(request, default=str))
    path = output / record
    if path.is_file():
        found = json.loads(path.read_text())
        if found != wanted:
            changed = sorted(k for k in wanted if found.get(k) != wanted[k])
            raise FileExistsError(
                f"{output} holds {what} with other settings ({', '.join(changed)}); rerun with "
                "the same ones to continue it, or choose another output folder"
            )
        return
    if output.is_dir() and any(output.iterdir()):
        raise FileExistsError(f"{output} is not empty and holds no {what}; choose a new folder")
    output.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(wanted, indent=2))
