"""``hardneg datasets download``: fetch a public BEIR dataset into the data directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hardneg.core.download import BEIR_MD5
from hardneg.service.commands.errors import reported

console = Console()


def download(
    name: Annotated[
        str, typer.Argument(help=f"BEIR dataset name, e.g. {', '.join(sorted(BEIR_MD5)[:4])}")
    ],
    base_url: Annotated[str | None, typer.Option(help="mirror serving <name>.zip")] = None,
    md5: Annotated[str | None, typer.Option(help="expected md5 of the zip")] = None,
    home: Annotated[
        Path | None, typer.Option(help="data directory (default $HARDNEG_HOME)")
    ] = None,
) -> None:
    """Download a public BEIR dataset (resumable, checksummed) into the data directory."""
    from hardneg.core.download import download_beir
    from hardneg.core.workspace import Workspace
    from hardneg.service.commands.progress_bars import ProgressBars
    from hardneg.service.settings import Settings

    settings = Settings(home=home) if home else Settings()
    workspace = Workspace(settings.home)
    with ProgressBars(console) as progress:
        folder = download_beir(
            name,
            workspace.datasets,
            base_url or settings.beir_base_url,
            md5,
            progress,
            timeout=settings.download_timeout_seconds,
        )
    console.print(f"{name} is at {folder}")


def register(app: typer.Typer) -> None:
    datasets_app = typer.Typer(help="BEIR datasets.", no_args_is_help=True)
    datasets_app.command("download")(reported(download))
    app.add_typer(datasets_app, name="datasets")
