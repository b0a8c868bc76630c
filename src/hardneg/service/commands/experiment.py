"""``hardneg experiment``: which negatives help on this corpus? Mine with every source on the same
budget, train every arm (and the control ``none``) with the same recipe and seeds, score on the
test split, compare with paired tests, print the comparison, write the report.

Rerunning the same command continues where a crashed or cancelled run stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from hardneg.service.commands.spec_options import Flag, option, spec_command
from hardneg.service.pipelines.experiment.report import (
    TABLE_HEADER,
    comparison_rows,
    verdict_sentence,
)
from hardneg.service.pipelines.experiment.request import ExperimentSpec

if TYPE_CHECKING:  # loads the workspace (faiss) when a command runs, not for --help
    from hardneg.service.settings import Settings

console = Console()


def comparison_table(report: dict[str, object]) -> Table:
    """Mean ± std over seeds on the test split; fits an 80-column terminal."""
    table = Table(
        title=f"which negatives help on {Path(str(report['dataset'])).name}? (test)",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
    )
    for i, name in enumerate(TABLE_HEADER):
        table.add_column(name, justify="left" if i == 0 else "right", no_wrap=True)
    for row in comparison_rows(report):
        table.add_row(*row)
    return table


FLAGS = (
    "data", "profile", Flag("methods", "method"), "seeds", "queries", "model", "cross_encoder",
    "llm_backend", "llm_model", "llm_base_url", "seed",
)  # fmt: skip


def run(spec: ExperimentSpec, settings: Settings, given: dict[str, Any]) -> None:
    from hardneg.service.commands.progress_bars import cli_context
    from hardneg.service.pipelines.experiment.run import run_experiment

    output = given["output"]
    folder = output or settings.home / "experiments" / f"{Path(spec.data).name}-{spec.profile}"
    with cli_context(console, settings, folder) as context:
        result = run_experiment(spec, context)
    console.print(comparison_table(result.report))
    console.print(verdict_sentence(result.report).replace("**", ""))
    console.print(
        f"report in {result.output / 'report.md'} ({result.report['wall_seconds']:.0f} s)"
    )


EXTRA = (
    option(
        "output",
        Annotated[
            Path | None,
            typer.Option(help="report folder (default: <home>/experiments/<data>-<profile>)"),
        ],
        None,
    ),
)


DOC = (
    "Compare BM25, dense, cross-encoder and LLM-written negatives against a control arm without "
    'hard negatives on one corpus: the comparison stage is STAR ("STAR, frozen documents" in the '
    "quick profile: the query tower against frozen document embeddings), then ADORE as a second "
    "stage that draws its own negatives; paired tests over seeds decide what is significant. "
    "The opt-in gpl arm trains MarginMSE on the cross-encoder's scores of the dense negatives."
)


def register(app: typer.Typer) -> None:
    command = spec_command(ExperimentSpec, FLAGS, run, EXTRA, DOC)
    app.command("experiment")(command)
