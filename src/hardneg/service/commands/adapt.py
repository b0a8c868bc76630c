"""``hardneg adapt``: a corpus without training queries → a retriever adapted to it (GPL-style),
or the base model when no checkpoint beats it on validation.

Every option of the run is one field of the typed spec
(:class:`hardneg.service.pipelines.adapt.spec.AdaptSpec`, the API body of
``POST /v1/jobs/adapt``): give them as a JSON file (``--config``) and/or ``--set key=value``
with dotted names (``--set queries.passages=300 --set train.steps=200``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hardneg.miners.llm.backends import BACKENDS, BackendConfig
from hardneg.service.commands.errors import reported
from hardneg.service.commands.tables import key_value_table

if TYPE_CHECKING:  # the pipeline (torch, faiss, llama.cpp) loads when the command runs
    from hardneg.service.pipelines.adapt.run import AdaptResult

logger = logging.getLogger(__name__)
console = Console()
DEFAULT_BASE_URL = str(BackendConfig.model_fields["base_url"].default)


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


def adapt(
    data: Annotated[str, typer.Option(help="BEIR folder (only its corpus is read) or name")],
    output: Annotated[Path, typer.Option(help="run folder (rerun the same command to resume)")],
    config: Annotated[
        Path | None, typer.Option(help="JSON file of spec fields (--set overrides it)")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="a spec field, dotted: queries.passages=300 (repeatable)"),
    ] = None,
    llm_backend: Annotated[str, typer.Option(help=f"LLM backend: {', '.join(BACKENDS)}")] = (
        "llama_cpp"
    ),
    llm_model: Annotated[
        str | None, typer.Option(help="llama_cpp: .gguf path (default SmolLM2); openai: model")
    ] = None,
    llm_base_url: Annotated[str, typer.Option(help="openai: endpoint")] = DEFAULT_BASE_URL,
    home: Annotated[
        Path | None, typer.Option(help="data directory (default $HARDNEG_HOME)")
    ] = None,
) -> None:
    """Generate queries for the corpus, mine and teacher-score negatives, train with MarginMSE,
    validate on held-out generated queries; return the base model unless a checkpoint beats it."""
    from hardneg.service.commands.progress_bars import ProgressBars
    from hardneg.service.pipelines.adapt.run import AdaptRequest, run_adapt
    from hardneg.service.pipelines.adapt.spec import load_spec
    from hardneg.service.settings import Settings
    from hardneg.trainers.launch import parse_overrides

    if llm_backend not in BACKENDS:
        raise typer.BadParameter(f"choose one of {list(BACKENDS)}", param_hint="--llm-backend")
    spec = load_spec(config, parse_overrides(set_ or []))
    settings = Settings(home=home) if home else Settings()
    chosen = {"backend": llm_backend, "model": llm_model, "base_url": llm_base_url}
    llm = BackendConfig.model_validate(settings.llm_config().model_dump() | chosen)
    request = AdaptRequest(data=data, spec=spec, llm=llm)
    with ProgressBars(console) as progress:
        result = run_adapt(request, settings, output, progress)
    console.print(summary_table(result))
    console.print(f"report in {result.output / 'report.json'}")


def register(app: typer.Typer) -> None:
    app.command("adapt")(reported(adapt))
