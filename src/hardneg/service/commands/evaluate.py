"""``hardneg evaluate``: BM25 and/or a dense model on a BEIR split, as a table and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hardneg.core.bm25_scoring import BM25Params
from hardneg.core.metrics import METRIC_NAMES
from hardneg.service.commands.choices import IndexKind
from hardneg.service.commands.errors import reported
from hardneg.service.commands.tables import fit_table

console = Console()
RETRIEVERS = ("bm25", "dense")  # hardneg.service.pipelines.evaluate.Retriever


def metrics_table(
    title: str, rows: dict[str, dict[str, float]], out: Console | None = None
) -> Table:
    cells = [
        [label, *(f"{metrics.get(m, float('nan')):.4f}" for m in METRIC_NAMES)]
        for label, metrics in rows.items()
    ]
    return fit_table(title, ("retriever", *METRIC_NAMES), cells, out or console)


def _retrievers(chosen: list[str] | None) -> list[str]:
    for name in chosen or []:
        if name not in RETRIEVERS:
            raise ValueError(f"--retriever must be one of {RETRIEVERS}, got {name!r}")
    return list(chosen or RETRIEVERS)


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
    from hardneg.core.atomic import write_text_atomic
    from hardneg.core.dense import DenseIndexConfig
    from hardneg.service.pipelines.evaluate import EvaluateRequest, run_evaluation
    from hardneg.service.progress import ProgressBars
    from hardneg.service.settings import Settings

    kinds = _retrievers(retriever)
    settings = Settings(home=home) if home else Settings()
    results = []
    with ProgressBars(console) as progress:
        for kind in kinds:
            request = EvaluateRequest(
                data=data,
                split=split,
                retriever=kind,  # type: ignore[arg-type]  # checked by _retrievers
                model=model,
                bm25=BM25Params(k1=k1, b=b),
                index=DenseIndexConfig(kind=index),
            )
            results.append(run_evaluation(request, settings, progress=progress))
    title = f"{data} / {split} ({results[0].evaluation.num_queries} queries)"
    console.print(metrics_table(title, {r.retriever: r.evaluation.mean for r in results}))
    if output is not None:
        payload = {"data": data, "split": split, "results": [r.summary() for r in results]}
        write_text_atomic(output, json.dumps(payload, indent=2) + "\n")
        console.print(f"metrics written to {output}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(reported(evaluate))
