"""The ``hardneg`` command line. Everything runs in-process; no Redis needed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hardneg.core.beir import DataError
from hardneg.core.bm25 import BM25Params
from hardneg.core.dense import DenseIndexConfig, IndexKind
from hardneg.core.download import BEIR_MD5, DownloadError, download_beir
from hardneg.core.metrics import METRIC_NAMES
from hardneg.core.workspace import Workspace
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


@app.command()
def evaluate(
    data: Annotated[str, typer.Option(help="BEIR folder, or a BEIR dataset name to download")],
    split: Annotated[str, typer.Option(help="qrels split to evaluate")] = "test",
    retriever: Annotated[Retriever, typer.Option(help="bm25 or dense")] = "bm25",
    model: Annotated[str | None, typer.Option(help="bi-encoder id or path (dense)")] = None,
    index: Annotated[IndexKind, typer.Option(help="FAISS index kind (dense)")] = "flat",
    k1: Annotated[float, typer.Option(help="BM25 k1")] = BM25Params.k1,
    b: Annotated[float, typer.Option(help="BM25 b")] = BM25Params.b,
    output: Annotated[Path | None, typer.Option(help="write metrics JSON here")] = None,
    home: Annotated[
        Path | None, typer.Option(help="data directory (default $HARDNEG_HOME)")
    ] = None,
) -> None:
    """Evaluate BM25 or a dense model on a BEIR split: prints a table, optionally writes JSON."""
    settings = Settings(home=home) if home else Settings()
    request = EvaluateRequest(
        data=data,
        split=split,
        retriever=retriever,
        model=model,
        bm25=BM25Params(k1=k1, b=b),
        index=DenseIndexConfig(kind=index),
    )
    try:
        with ProgressBars(console) as progress:
            result = run_evaluation(request, settings, output, progress)
    except (DataError, DownloadError, FileNotFoundError, ValueError) as exc:
        raise _fail(str(exc)) from None
    title = f"{data} / {split} ({result.evaluation.num_queries} queries)"
    console.print(metrics_table(title, {result.retriever: result.evaluation.mean}))
    if output is not None:
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
for _register in ():
    _register(app)
