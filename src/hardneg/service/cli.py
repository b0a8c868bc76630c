"""The ``hardneg`` command line. Everything runs in-process; no Redis needed."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, cast, get_args

import typer
from rich.console import Console
from rich.table import Table

from hardneg.core.atomic import write_text_atomic
from hardneg.core.beir import DataError
from hardneg.core.bm25 import BM25Params
from hardneg.core.dense import DenseIndexConfig, IndexKind
from hardneg.core.download import BEIR_MD5, DownloadError, download_beir
from hardneg.core.metrics import METRIC_NAMES
from hardneg.core.workspace import Workspace
from hardneg.service.commands import experiment as experiment_command
from hardneg.service.commands import generate as generate_command
from hardneg.service.commands import mine as mine_command
from hardneg.service.commands import serve as serve_command
from hardneg.service.commands import train as train_command
from hardneg.service.commands import worker as worker_command
from hardneg.service.pipelines.evaluate import EvaluateRequest, Retriever, run_evaluation
from hardneg.service.progress import ProgressBars
from hardneg.service.settings import Settings

app = typer.Typer(
    help="Hard negatives, dense-retriever training and BEIR evaluation.", no_args_is_help=True
)
datasets_app = typer.Typer(help="BEIR datasets.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")

console = Console()
logger = logging.getLogger("hardneg")


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "sentence_transformers", "bm25s", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=2)


def metrics_table(title: str, rows: dict[str, dict[str, float]]) -> Table:
    table = Table(title=title)
    table.add_column("retriever")
    for name in METRIC_NAMES:
        table.add_column(name, justify="right")
    for label, metrics in rows.items():
        table.add_row(label, *(f"{metrics.get(m, float('nan')):.4f}" for m in METRIC_NAMES))
    return table


def _retrievers(chosen: list[str] | None) -> list[Retriever]:
    kinds: list[Retriever] = []
    for name in chosen or ["bm25", "dense"]:
        if name not in get_args(Retriever):
            raise _fail(f"--retriever must be one of {get_args(Retriever)}, got {name!r}")
        kinds.append(cast(Retriever, name))
    return kinds


@app.command()
def evaluate(
    data: Annotated[
        str, typer.Option(help="BEIR folder, or a BEIR dataset name (found or downloaded)")
    ] = "scifact",
    split: Annotated[str, typer.Option(help="qrels split to evaluate")] = "test",
    retriever: Annotated[
        list[str] | None, typer.Option(help="bm25 and/or dense (repeat the option)")
    ] = None,
    model: Annotated[str | None, typer.Option(help="bi-encoder id or path (dense)")] = None,
    index: Annotated[IndexKind, typer.Option(help="FAISS index kind (dense)")] = "flat",
    k1: Annotated[float, typer.Option(help="BM25 k1")] = BM25Params.k1,
    b: Annotated[float, typer.Option(help="BM25 b")] = BM25Params.b,
    output: Annotated[Path | None, typer.Option(help="write metrics JSON here")] = None,
    home: Annotated[
        Path | None, typer.Option(help="data directory (default $HARDNEG_HOME)")
    ] = None,
) -> None:
    """Evaluate BM25 and/or a dense model on a BEIR split; print a table, optionally write JSON."""
    settings = Settings(home=home) if home else Settings()
    results = []
    try:
        with ProgressBars(console) as progress:
            for kind in _retrievers(retriever):
                request = EvaluateRequest(
                    data=data,
                    split=split,
                    retriever=kind,
                    model=model,
                    bm25=BM25Params(k1=k1, b=b),
                    index=DenseIndexConfig(kind=index),
                )
                results.append(run_evaluation(request, settings, progress=progress))
    except (DataError, DownloadError, FileNotFoundError, ValueError) as exc:
        raise _fail(str(exc)) from None
    title = f"{data} / {split} ({results[0].evaluation.num_queries} queries)"
    console.print(metrics_table(title, {r.retriever: r.evaluation.mean for r in results}))
    if output is not None:
        payload = {"data": data, "split": split, "results": [r.summary() for r in results]}
        write_text_atomic(output, json.dumps(payload, indent=2) + "\n")
        console.print(f"metrics written to {output}")


@datasets_app.command("download")
def datasets_download(
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
    settings = Settings(home=home) if home else Settings()
    workspace = Workspace(settings.home)
    try:
        with ProgressBars(console) as progress:
            folder = download_beir(
                name, workspace.datasets, base_url or settings.beir_base_url, md5, progress
            )
    except (DownloadError, DataError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    console.print(f"{name} is at {folder}")


# Sub-commands that live in their own modules (hardneg.service.commands.*) register here.
_REGISTRARS: tuple[Callable[[typer.Typer], None], ...] = (
    experiment_command.register,
    generate_command.register,
    mine_command.register,
    train_command.register,
    serve_command.register,
    worker_command.register,
)
for _register in _REGISTRARS:
    _register(app)


if __name__ == "__main__":
    app()
