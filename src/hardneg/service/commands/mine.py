"""``hardneg mine``: hard negatives for a BEIR split, in-process, with progress bars; its options
are generated from :class:`hardneg.miners.spec.MineSpec`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.console import Console
from rich.table import Table

from hardneg.miners.spec import MineSpec
from hardneg.service.commands.spec_options import (
    Flag,
    data_option,
    option,
    output_option,
    spec_command,
)
from hardneg.service.commands.tables import key_value_table

if TYPE_CHECKING:  # the pipeline (torch, faiss) loads when the command runs, not for --help
    from hardneg.service.pipelines.mine import MineResult
    from hardneg.service.settings import Settings

console = Console()


def summary_table(result: MineResult) -> Table:
    stats = result.stats
    queries = cast(dict[str, object], stats["queries"])
    table = key_value_table(f"mined with {stats['method']}")
    table.add_row("queries", str(queries["num_queries"]))
    table.add_row("with all negatives", str(queries["queries_full"]))
    table.add_row("short of negatives", str(queries["queries_short"]))
    table.add_row("skipped (reason: count)", str(queries["queries_skipped"] or "none"))
    table.add_row("negatives", str(stats["negatives"]))
    probe = cast(dict[str, object], stats.get("false_negative_probe") or {})
    if probe.get("rate") is not None:
        table.add_row(
            "hidden positives mined (probe)",
            f"{probe['returned']} of {probe['hidden_positives']} ({probe['rate']:.3f})",
        )
    table.add_row("seconds", ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items()))
    table.add_row("output", str(result.output))
    return table


FLAGS = (
    "split", "method", "model", "cross_encoder", "num_negatives", "range_min", "range_max",
    "max_score", "min_score", "absolute_margin", "relative_margin", "sampling", "seed",
    "min_negatives", "pool_depth", "denoise_margin", "index", "k1", "b", "batch_size",
    "processes", Flag("layouts", "layout"), Flag("formats", "format"), "cache", "llm_backend",
    "llm_model", "llm_base_url", "llm_api_key_env", "llm_per_query", "llm_max_queries",
    "llm_prompt_file",
)  # fmt: skip


def run(spec: MineSpec, settings: Settings, given: dict[str, Any]) -> None:
    from hardneg.service.commands.progress_bars import cli_context
    from hardneg.service.pipelines.mine import run_mining

    if not given["denoise"]:
        spec = spec.model_copy(update={"denoise_margin": None})
    with cli_context(console, settings, given["output"]) as context:
        result = run_mining(spec, given["data"], context)
    console.print(summary_table(result))


EXTRA = (
    data_option(),
    output_option("output folder (created or replaced)"),
    option(
        "denoise", Annotated[bool, typer.Option(help="cross-encoder: drop positive-like")], True
    ),
)


def register(app: typer.Typer) -> None:
    doc = "Mine hard negatives for a BEIR split and write them (plus stats) to OUTPUT."
    app.command("mine")(spec_command(MineSpec, FLAGS, run, EXTRA, doc))
