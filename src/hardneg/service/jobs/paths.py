"""Server-side paths a request may name: confined to the configured allowed roots.

A path is resolved (symlinks followed, ``..`` collapsed) *before* it is compared with the roots,
so neither ``../`` nor a symlink pointing outside can escape them.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from pathlib import Path

from hardneg.core.encoders import resolve_model
from hardneg.service.settings import Settings

JOB_MODEL_PREFIX = "job:"
JOB_ID = re.compile(r"^j[0-9a-f]{32}$")
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
MODEL_ARTIFACT = "model"  # a training job's model folder inside its output directory


class PathRefusedError(ValueError):
    """A path outside the allowed roots, or a reference that is not allowed."""


class UnusablePathError(PathRefusedError):
    """A path the OS refuses (name too long, an unknown ``~user``, a symlink loop)."""


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
    try:
        candidate = Path(path).expanduser()
        if not candidate.is_absolute():
            raise PathRefusedError("path must be absolute")
        resolved = candidate.resolve(strict=False)
        _probe(resolved)
    except RuntimeError:  # expanduser: "~nobody" names no user
        raise UnusablePathError("path names an unknown user's home (~user)") from None
    except OSError as exc:  # too long, a symlink loop ...
        raise UnusablePathError(f"the server cannot use that path ({exc.strerror})") from None
    for root in roots:
        if resolved.is_relative_to(root.expanduser().resolve(strict=False)):
            return resolved
    raise PathRefusedError("path is not under an allowed root")


def confine_tree(folder: Path, roots: Sequence[Path], depth: int = 3) -> None:
    """Refuse a folder (already confined) holding a link that leads outside the roots: a file
    inside an allowed root that is a symlink to ``/etc/shadow`` is not read through it."""
    bases = [root.expanduser().resolve(strict=False) for root in roots]
    pending = [(folder, 0)]
    while pending:
        current, level = pending.pop()
        try:
            entries = list(current.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.is_symlink():
                target = entry.resolve(strict=False)
                if not any(target.is_relative_to(base) for base in bases):
                    name = entry.relative_to(folder)
                    raise PathRefusedError(f"{name} is a link to outside the allowed roots")
            elif entry.is_dir() and level < depth:
                pending.append((entry, level + 1))


def _probe(path: Path) -> None:
    """Raise the OSError the OS has for ``path`` (name too long ...), other than its absence."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        path.lstat()


def resolve_model_ref(ref: str, settings: Settings) -> str:
    """Turn a model reference into what ``load_encoder`` takes, refusing unsafe ones.

    ``job:<id>`` is the model a training job produced; an absolute path must lie under the
    allowed roots; the default model (and its packaged copy) is always allowed; anything else
    must look like a hub id (``name`` or ``org/name``), must not name a local file, and is
    allowed only with ``allow_hub_models`` (a hub download has no size cap).
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
    if ref == settings.model or resolve_model(ref) != ref:  # the default, or the packaged copy
        return ref
    if ".." in ref or not HUB_ID.fullmatch(ref) or Path(ref).exists():
        raise PathRefusedError(f"{ref!r} is neither a hub id, 'job:<id>', nor an absolute path")
    if not settings.allow_hub_models:
        raise PathRefusedError(
            f"{ref!r} would be downloaded from the model hub, which this server does not allow "
            "(HARDNEG_ALLOW_HUB_MODELS); use 'job:<id>', a path under an allowed root, or the "
            "default model"
        )
    return ref
