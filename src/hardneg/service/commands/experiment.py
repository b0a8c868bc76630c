"""``hardneg experiment``: which negatives help on this corpus? Mine with every source on the same
budget, train every arm (and the control ``none``) with the same recipe and seeds, score on the
test split, compare with paired tests, print the comparison, write the report.

Rerunning the same command continues where a crashed or cancelled run stopped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, cast

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from hardneg.miners.llm.backends import BACKENDS, Backend, BackendConfig
from hardneg.service.commands.errors import reported
from hardneg.service.pipelines.experiment.data import QUERY_SOURCES, QuerySource
from hardneg.service.pipelines.experiment.profiles import (
    DEFAULT_METHODS,
    METHODS,
    PROFILES,
    get_profile,
)
from hardneg.service.pipelines.experiment.report import (
    TABLE_HEADER,
    comparison_rows,
    verdict_sentence,
)

logger = logging.getLogger(__name__)
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


def experiment(
    data: Annotated[
        str, typer.Option(help="BEIR folder, or a BEIR dataset name (found or downloaded)")
    ] = "scifact",
    profile: Annotated[
        str, typer.Option(help=f"budget and recipe: {', '.join(PROFILES)}")
    ] = "quick",
    method: Annotated[
        list[str] | None,
        typer.Option(
            help=f"negative sources to compare, each an arm beside the control arm none "
            f"(repeat; one of {', '.join(METHODS)}; default: {', '.join(DEFAULT_METHODS)}; "
            "llm shows the LLM the query and its positive, llm-query-only the query alone)"
        ),
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option(min=1, help="training repeats per arm (default: the profile's, quick 3)"),
    ] = None,
    queries: Annotated[
        str,
        typer.Option(
            help="training queries: human (the train split) or generated (LLM-written, "
            "round-trip filtered, even when a train split exists)"
        ),
    ] = "human",
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
    seed: Annotated[
        int, typer.Option(help="seed of the query roles; training seeds are seed, seed + 1, ...")
    ] = 13,
    home: Annotated[
        Path | None, typer.Option(help="data directory (default $HARDNEG_HOME)")
    ] = None,
) -> None:
    """Compare BM25, dense, cross-encoder and LLM-written negatives against a control arm without
    hard negatives on one corpus: the comparison stage is STAR ("STAR, frozen documents" in the
    quick profile: the query tower against frozen document embeddings), then ADORE as a second
    stage that draws its own negatives; paired tests over seeds decide what is significant."""
    from hardneg.service.pipelines.experiment.run import ExperimentRequest, run_experiment
    from hardneg.service.progress import ProgressBars
    from hardneg.service.settings import Settings

    if queries not in QUERY_SOURCES:
        raise typer.BadParameter(f"choose one of {list(QUERY_SOURCES)}", param_hint="--queries")
    if llm_backend not in BACKENDS:
        raise typer.BadParameter(f"choose one of {list(BACKENDS)}", param_hint="--llm-backend")
    settings = Settings(home=home) if home else Settings()
    folder = output or settings.home / "experiments" / f"{Path(data).name}-{profile}"
    request = ExperimentRequest(
        data=data,
        profile=get_profile(profile),
        methods=tuple(method) if method else DEFAULT_METHODS,
        model=model,
        cross_encoder=cross_encoder,
        llm=BackendConfig(
            backend=cast(Backend, llm_backend),
            model=llm_model,
            base_url=llm_base_url,
            concurrency=settings.llm_concurrency,
        ),
        seed=seed,
        seeds=seeds,
        queries=cast(QuerySource, queries),
    )
    with ProgressBars(console) as progress:
        result = run_experiment(request, settings, folder, progress)
    console.print(comparison_table(result.report))
    console.print(verdict_sentence(result.report).replace("**", ""))
    console.print(
        f"report in {result.output / 'report.md'} ({result.report['wall_seconds']:.0f} s)"
    )


def register(app: typer.Typer) -> None:
    app.command("experiment")(reported(experiment))
