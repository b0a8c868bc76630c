"""What a command reports as a one-line error (exit code 2) instead of a traceback: bad input
files, failed downloads, refused output folders, bad values, missing extras, a failing LLM."""

from __future__ import annotations

from hardneg.core.beir import DataError
from hardneg.core.download import DownloadError
from hardneg.miners.llm.client import LLMError

USER_ERRORS: tuple[type[Exception], ...] = (
    DataError,
    DownloadError,
    FileNotFoundError,
    FileExistsError,
    ValueError,
    ImportError,
    LLMError,
)
