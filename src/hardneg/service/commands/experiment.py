"""``hardneg experiment``: which negatives help on this corpus? Mine with every method on the same
budget, train the same recipe, score on the test split, print the comparison, write the report.

Rerunning the same command continues where a crashed or cancelled run stopped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.console import Console
from rich.table import Table

from hardneg.miners.llm.backends import BACKENDS, Backend, BackendConfig
from hardneg.service.commands.errors import reported
from hardneg.service.pipelines.experiment.profiles import METHODS, PROFILES, get_profile
from hardneg.service.pipelines.experiment.report import TABLE_HEADER, comparison_rows

logger = logging.getLogger(__name__)
console = Console()


def comparison_table(report: dict[str, object]) -> Table:
    table = Table(title=f"which negatives help on {report['dataset']}? (test split)")
    for i, name in enumerate(TABLE_HEADER):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in comparison_rows(report):
        table.add_row(*row)
    return table


def experiment(
    data: Annotated[
        str, typer.Option(help="BEIR folder, or a BEIR dataset name (found or downloaded)")
    ] = "scifact",
    profile: Annotated[
        str, typer.Option(help=f"budget and recipe: {', '.join(PROFILES)}")
    ] = "quick",
    method: Annotated[
        list[str] | None,
        typer.Option(help=f"negative sources to compare (repeat; default: {', '.join(METHODS)})"),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(help="report folder (default: <home>/experiments/<data>-<profile>)"),
    ] = None,
    model: Annotated[str | None, typer.Option(help="base bi-encoder id or path")] = None,
    cross_encoder: Annotated[
        str | None,
        typer.Option(help="cross-encoder id or path (default: train one on held-out queries)"),
    ] = None,
    llm_backend: Annotated[str, typer.Option(help=f"LLM backend: {', '.join(BACKENDS)}")] = (
        "llama_cpp"
    ),
    llm_model: Annotated[
        str | None, typer.Option(help="llama_cpp: .gguf path (default SmolLM2); openai: model")
    ] = None,
    llm_base_url: Annotated[str, typer.Option(help="openai: endpoint")] = BackendConfig.base_url,
    seed: Annotated[int, typer.Option(help="budget sample and sampling seed")] = 13,
    home: Annotated[
        Path | None, typer.Option(help="data directory (default $HARDNEG_HOME)")
    ] = None,
) -> None:
    """Compare BM25, dense, cross-encoder and LLM-written negatives on one corpus (a report)."""
    from hardneg.service.pipelines.experiment.run import ExperimentRequest, run_experiment
    from hardneg.service.progress import ProgressBars
    from hardneg.service.settings import Settings

    if llm_backend not in BACKENDS:
        raise typer.BadParameter(f"choose one of {list(BACKENDS)}", param_hint="--llm-backend")
    settings = Settings(home=home) if home else Settings()
    folder = output or settings.home / "experiments" / f"{Path(data).name}-{profile}"
    request = ExperimentRequest(
        data=data,
        profile=get_profile(profile),
        methods=tuple(method) if method else METHODS,
        model=model,
        cross_encoder=cross_encoder,
        llm=BackendConfig(
            backend=cast(Backend, llm_backend), model=llm_model, base_url=llm_base_url
        ),
        seed=seed,
    )
    with ProgressBars(console) as progress:
        result = run_experiment(request, settings, folder, progress)
    console.print(comparison_table(result.report))
    console.print(
        f"best: {result.report['best_method']}; report in {result.output / 'report.md'} "
        f"({result.report['wall_seconds']:.0f} s)"
    )


def register(app: typer.Typer) -> None:
    app.command("experiment")(reported(experiment))
