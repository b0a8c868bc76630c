"""``hardneg evaluate``: BM25 and/or a dense model on a BEIR split, as a table and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hardneg.core.metrics import METRIC_NAMES
from hardneg.service.commands.spec_options import option, spec_command
from hardneg.service.commands.tables import fit_table
from hardneg.service.specs import RETRIEVERS, EvaluateSpec

if TYPE_CHECKING:  # loads the workspace (faiss) when a command runs, not for --help
    from hardneg.service.settings import Settings

console = Console()


def metrics_table(
    title: str, rows: dict[str, dict[str, float]], out: Console | None = None
) -> Table:
    cells = [
        [label, *(f"{metrics.get(m, float('nan')):.4f}" for m in METRIC_NAMES)]
        for label, metrics in rows.items()
    ]
    return fit_table(title, ("retriever", *METRIC_NAMES), cells, out or console)


def run(spec: EvaluateSpec, settings: Settings, given: dict[str, Any]) -> None:
    from hardneg.core.atomic import write_text_atomic
    from hardneg.service.commands.progress_bars import ProgressBars
    from hardneg.service.pipelines.evaluate import run_evaluation

    data, output = given["data"], given["output"]
    kinds = given["retriever"] or list(RETRIEVERS)
    for name in kinds:
        if name not in RETRIEVERS:
            raise ValueError(f"--retriever must be one of {RETRIEVERS}, got {name!r}")
    results = []
    with ProgressBars(console) as progress:
        for kind in kinds:
            one = spec.model_copy(update={"retriever": kind})
            results.append(run_evaluation(one, data, settings, progress=progress))
    title = f"{data} / {spec.split} ({results[0].evaluation.num_queries} queries)"
    console.print(metrics_table(title, {r.retriever: r.evaluation.mean for r in results}))
    if output is not None:
        payload = {"data": data, "split": spec.split, "results": [r.summary() for r in results]}
        write_text_atomic(output, json.dumps(payload, indent=2) + "\n")
        console.print(f"metrics written to {output}")


EXTRA = (
    option(
        "data",
        Annotated[
            str, typer.Option(help="BEIR folder, or a BEIR dataset name (found or downloaded)")
        ],
        "scifact",
    ),
    option(
        "retriever",
        Annotated[list[str] | None, typer.Option(help="bm25 and/or dense (repeat)")],
        None,
    ),
    option("output", Annotated[Path | None, typer.Option(help="write metrics JSON here")], None),
)


def register(app: typer.Typer) -> None:
    command = spec_command(
        EvaluateSpec,
        ("split", "model", "index", "k1", "b"),
        run,
        EXTRA,
        doc="Evaluate BM25 and/or a dense model on a BEIR split; print a table, optionally write "
        "JSON.",
    )
    app.command("evaluate")(command)
