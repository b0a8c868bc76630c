"""``hardneg adapt``: a corpus without training queries → a retriever adapted to it (GPL-style),
or the base model when no checkpoint beats it on validation.

Its options are generated from the typed spec
(:class:`hardneg.service.pipelines.adapt.spec.AdaptSpec`, the API body of
``POST /v1/jobs/adapt``): flags for the common fields, any field from a JSON or YAML file
(``--config``) and/or ``--set key=value`` with dotted names
(``--set queries.passages=300 --set train.steps=200``). The LLM starts from the settings'
(``HARDNEG_LLM_*``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from hardneg.service.commands.spec_options import (
    data_option,
    output_option,
    spec_command,
)
from hardneg.service.commands.tables import key_value_table
from hardneg.service.pipelines.adapt.spec import AdaptSpec

if TYPE_CHECKING:  # the pipeline (torch, faiss, llama.cpp) loads when the command runs
    from hardneg.service.pipelines.adapt.run import AdaptResult
    from hardneg.service.settings import Settings

console = Console()


def summary_table(result: AdaptResult) -> Table:
    report: dict[str, Any] = result.report
    queries, validation = report["queries"], report["validation"]
    table = key_value_table("adapt")
    table.add_row(
        "generated queries", f"{queries['generated']} from {queries['passages']} passages"
    )
    table.add_row(
        "kept",
        f"{queries['kept']} ({queries['kept_share']:.0%}) -> {queries['train_queries']} train, "
        f"{queries['val_queries']} validation queries",
    )
    for reason, count in queries["dropped"].items():
        table.add_row(f"dropped: {reason}", str(count))
    table.add_row("teacher", str(report["teacher"]["scorer"]))
    table.add_row(
        "validation nDCG@10",
        f"base {validation['base']} -> checkpoint {validation['chosen_checkpoint']} "
        f"(step {validation['chosen_step']})",
    )
    table.add_row("decision", report["decision"])
    table.add_row("model", result.model)
    table.add_row("seconds", f"{report['wall_seconds']:.0f}")
    return table


FLAGS = ("model", "teacher", "cross_encoder", "seed", "llm_backend", "llm_model", "llm_base_url")


def run(spec: AdaptSpec, settings: Settings, given: dict[str, Any]) -> None:
    from hardneg.service.commands.progress_bars import cli_context
    from hardneg.service.pipelines.adapt.run import run_adapt

    with cli_context(console, settings, given["output"]) as context:
        result = run_adapt(spec, given["data"], context)
    console.print(summary_table(result))
    console.print(f"report in {result.output / 'report.json'}")


EXTRA = (
    data_option("BEIR folder (only its corpus is read) or name"),
    output_option("run folder (rerun the same command to resume)"),
)
DOC = (
    "Generate queries for the corpus, mine and teacher-score negatives, train with MarginMSE, "
    "validate on held-out generated queries; return the base model unless a checkpoint beats it."
)


def register(app: typer.Typer) -> None:
    app.command("adapt")(spec_command(AdaptSpec, FLAGS, run, EXTRA, DOC))
