"""The one place where a command's failure becomes a one-line message and an exit code.

Every command is wrapped in :func:`reported` when it is registered. A user or environment error
(bad input file, failed download, refused output folder, bad value, missing extra, failing LLM)
prints ``error: <what and why>`` on one line and exits 2; anything else prints one line naming
the exception and exits 1. ``hardneg --verbose ...`` re-raises instead, for the full traceback.

Only light modules are imported here: ``hardneg --help`` must not load torch (see cli.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from hardneg.core.beir import DataError
from hardneg.core.download import DownloadError, network_cause
from hardneg.miners.llm.client import LLMError

USER_ERRORS: tuple[type[Exception], ...] = (
    DataError,
    DownloadError,
    OSError,  # FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError ...
    ValueError,  # pydantic's ValidationError included
    ImportError,
    LLMError,
    httpx.HTTPError,
)
USER_ERROR_EXIT = 2
BUG_EXIT = 1

_DOWNLOAD_HINT = (
    "check the network (or --base-url / HARDNEG_BEIR_BASE_URL), or pass a local BEIR folder "
    "as --data (or list its parent in HARDNEG_DATA_DIRS)"
)
_EXTRA_HINT = "install the extra that provides it: pip install 'hardneg[cpu,llm]'"

P = ParamSpec("P")
R = TypeVar("R")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _validation(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or exc.title
        parts.append(f"{where}: {error['msg']}")
    return f"invalid {exc.title}: " + "; ".join(parts)


def describe(exc: BaseException) -> str | None:
    """The one-line message for a user or environment error; ``None`` for anything else."""
    if not isinstance(exc, USER_ERRORS):
        return None
    if isinstance(exc, DownloadError):
        return _one_line(f"{exc}; {_DOWNLOAD_HINT}")
    if isinstance(exc, httpx.HTTPError):
        try:
            url = str(exc.request.url)
        except RuntimeError:
            url = "the server"
        return _one_line(f"cannot reach {url}: {network_cause(exc)}")
    if isinstance(exc, ValidationError):
        return _one_line(_validation(exc))
    if isinstance(exc, ImportError):
        missing = f"the module {exc.name!r} is not installed" if exc.name else str(exc)
        return _one_line(f"{missing}; {_EXTRA_HINT}")
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return _one_line(f"{exc.filename}: {exc.strerror}")
    return _one_line(str(exc) or type(exc).__name__)


class _Mode:
    verbose = False  # set by ``hardneg --verbose`` (the top-level callback), for this process


def set_verbose(verbose: bool) -> None:
    """With ``True``, :func:`reported` commands re-raise (the full traceback is shown)."""
    _Mode.verbose = verbose


def report(exc: Exception, console: Console | None = None) -> typer.Exit:
    """Print the one line for ``exc`` and return the ``typer.Exit`` to raise."""
    out = console or Console()
    message = describe(exc)
    if message is None:
        message = _one_line(
            f"unexpected {type(exc).__name__}: {exc} (rerun with --verbose for the traceback)"
        )
        code = BUG_EXIT
    else:
        code = USER_ERROR_EXIT
    out.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True, highlight=False)
    return typer.Exit(code=code)


def reported(command: Callable[P, R]) -> Callable[P, R]:
    """Wrap a command so its failures are reported by :func:`report` (unless ``--verbose``)."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # exits and usage errors: typer reports those itself
        except Exception as exc:
            if _Mode.verbose:
                raise
            raise report(exc) from None

    return run
