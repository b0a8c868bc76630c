"""Server-side paths a request may name: confined to the configured allowed roots.

A path is resolved (symlinks followed, ``..`` collapsed) *before* it is compared with the roots,
so neither ``../`` nor a symlink pointing outside can escape them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from hardneg.service.settings import Settings

JOB_MODEL_PREFIX = "job:"
JOB_ID = re.compile(r"^j[0-9a-f]{32}$")
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
MODEL_ARTIFACT = "model"  # a training job's model folder inside its output directory


class PathRefusedError(ValueError):
    """A path outside the allowed roots, or a reference that is not allowed."""


def jobs_root(home: Path) -> Path:
    return home / "jobs"


def job_dir(home: Path, job_id: str) -> Path:
    if not JOB_ID.fullmatch(job_id):
        raise PathRefusedError(f"not a job id: {job_id!r}")
    return jobs_root(home) / job_id


def confine(path: str, roots: Sequence[Path]) -> Path:
    """The resolved ``path`` if it lies under one of ``roots``; else :class:`PathRefusedError`."""
    if not roots:
        raise PathRefusedError("no allowed roots are configured (HARDNEG_ALLOWED_ROOTS)")
    if "\x00" in path:
        raise PathRefusedError("path contains a NUL byte")
    candidate = Path(path).expanduser()
    if not candidate.is_absolute():
        raise PathRefusedError("path must be absolute")
    resolved = candidate.resolve(strict=False)
    for root in roots:
        if resolved.is_relative_to(root.expanduser().resolve(strict=False)):
            return resolved
    raise PathRefusedError("path is not under an allowed root")


def resolve_model_ref(ref: str, settings: Settings) -> str:
    """Turn a model reference into what ``load_encoder`` takes, refusing unsafe ones.

    ``job:<id>`` is the model a training job produced; an absolute path must lie under the
    allowed roots; anything else must look like a hub id (``name`` or ``org/name``) and must not
    name a local file.
    """
    if ref.startswith(JOB_MODEL_PREFIX):
        folder = job_dir(settings.home, ref.removeprefix(JOB_MODEL_PREFIX)) / MODEL_ARTIFACT
        if not folder.is_dir():
            raise PathRefusedError(f"{ref!r} has no trained model (is the job finished?)")
        return str(folder)
    if ref.startswith(("/", "~")):
        folder = confine(ref, settings.allowed_roots)
        if not folder.exists():
            raise PathRefusedError("no model at that path")
        return str(folder)
    if ref == settings.model:
        return ref
    if ".." in ref or not HUB_ID.fullmatch(ref) or Path(ref).exists():
        raise PathRefusedError(f"{ref!r} is neither a hub id, 'job:<id>', nor an absolute path")
    return ref
