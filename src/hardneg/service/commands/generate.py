"""``hardneg generate-queries``: LLM-written training queries for a corpus, with progress bars."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import typer
from rich.console import Console
from rich.table import Table

from hardneg.service.commands.spec_options import Flag, data_option, output_option, spec_command
from hardneg.service.commands.tables import key_value_table
from hardneg.service.specs import GenerateSpec

if TYPE_CHECKING:  # the pipeline (torch, faiss) loads when the command runs, not for --help
    from hardneg.service.pipelines.generate import GenerateQueriesResult
    from hardneg.service.settings import Settings

console = Console()


def summary_table(result: GenerateQueriesResult) -> Table:
    report, generation = result.report, result.generation
    table = key_value_table("generated queries")
    table.add_row("passages", str(result.passages))
    table.add_row("generations", f"{report['total']} ({generation['cached']} from cache)")
    table.add_row("queries kept", f"{report['kept']} generations -> {result.queries} queries")
    dropped = cast(dict[str, int], report["dropped"])
    total = max(cast(int, report["total"]), 1)
    for reason, count in dropped.items():
        table.add_row(f"dropped: {reason}", f"{count} ({count / total:.0%})")
    rate = generation.get("generations_per_second")
    if isinstance(rate, float):
        table.add_row("generation speed", f"{rate:.2f} generations/s")
    table.add_row("seconds", ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items()))
    table.add_row("output", str(result.output))
    return table


FLAGS = (
    Flag("llm_backend", "backend"), Flag("llm_model", "model"), Flag("llm_base_url", "base_url"),
    Flag("llm_api_key_env", "api_key_env"), Flag("llm_concurrency", "concurrency"),
    Flag("llm_timeout_s", "timeout"), Flag("llm_max_retries", "max_retries"),
    Flag("llm_n_threads", "threads"), Flag("llm_n_ctx", "n_ctx"), "per_passage", "max_passages",
    "seed", "round_trip", "round_trip_k", "encoder", "prompt_file", "temperature", "max_tokens",
    "skip_failures", "cache",
)  # fmt: skip


def run(spec: GenerateSpec, settings: Settings, given: dict[str, Any]) -> None:
    from hardneg.service.commands.progress_bars import cli_context
    from hardneg.service.pipelines.generate import run_generate_queries

    with cli_context(console, settings, given["output"]) as context:
        result = run_generate_queries(spec, given["data"], context)
    console.print(summary_table(result))


EXTRA = (data_option(), output_option("output folder (a BEIR folder)"))
DOC = "Write queries for a corpus's passages with an LLM; keep those that retrieve their passage."


def register(app: typer.Typer) -> None:
    command = spec_command(GenerateSpec, FLAGS, run, EXTRA, DOC)
    app.command("generate-queries")(command)
