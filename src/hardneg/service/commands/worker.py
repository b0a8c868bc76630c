"""``hardneg worker``: run queued jobs (needs Redis and the data directory the API uses)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from hardneg.service.commands.errors import reported

logger = logging.getLogger(__name__)


def worker(
    home: Annotated[
        Path | None, typer.Option(help="data directory shared with the API ($HARDNEG_HOME)")
    ] = None,
    burst: Annotated[bool, typer.Option(help="exit once the queue is empty")] = False,
    log_level: Annotated[str, typer.Option(help="worker log level")] = "INFO",
) -> None:
    """Run jobs from the queue until stopped (SIGTERM finishes the current job first)."""
    from hardneg.service.jobs.connection import RedisUnavailableError
    from hardneg.service.jobs.worker import run_worker
    from hardneg.service.settings import Settings

    if home is not None:  # work horses build Settings() from the environment
        os.environ["HARDNEG_HOME"] = str(home)
    settings = Settings()
    try:
        run_worker(settings, burst=burst, log_level=log_level.upper())
    except RedisUnavailableError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None


def register(app: typer.Typer) -> None:
    app.command("worker")(reported(worker))
