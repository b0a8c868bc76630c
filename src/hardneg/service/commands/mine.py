"""``hardneg mine``: hard negatives for a BEIR split, in-process, with progress bars."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.console import Console
from rich.table import Table

from hardneg.core.bm25_scoring import BM25Params
from hardneg.service.commands.choices import FORMATS, LAYOUTS, MINE_METHODS, IndexKind
from hardneg.service.commands.errors import reported
from hardneg.service.commands.tables import key_value_table

if TYPE_CHECKING:  # the pipeline (torch, faiss) loads when the command runs, not for --help
    from hardneg.service.pipelines.mine import MineResult

logger = logging.getLogger(__name__)
console = Console()


def _choices(values: list[str] | None, allowed: tuple[str, ...], name: str) -> tuple[str, ...]:
    if not values:
        return allowed
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise typer.BadParameter(f"{unknown} not in {list(allowed)}", param_hint=name)
    return tuple(dict.fromkeys(values))


def _llm_options(**given: object) -> dict[str, object]:
    """The ``llm_*`` job options the user set (see hardneg.miners.llm.mine)."""
    return {key: value for key, value in given.items() if value is not None}


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


def mine(
    data: Annotated[str, typer.Option(help="BEIR folder, or a BEIR dataset name to download")],
    output: Annotated[Path, typer.Option(help="output folder (created or replaced whole)")],
    split: Annotated[str, typer.Option(help="qrels split whose queries get negatives")] = "train",
    method: Annotated[str, typer.Option(help="bm25, dense, cross-encoder (or llm)")] = "bm25",
    model: Annotated[str | None, typer.Option(help="bi-encoder id or path (dense)")] = None,
    cross_encoder: Annotated[
        str | None, typer.Option(help="cross-encoder id or path (cross-encoder)")
    ] = None,
    num_negatives: Annotated[int, typer.Option(help="negatives per query")] = 3,
    range_min: Annotated[int, typer.Option(help="skip this many best candidates")] = 0,
    range_max: Annotated[int | None, typer.Option(help="consider this many candidates")] = None,
    max_score: Annotated[float | None, typer.Option(help="drop candidates above")] = None,
    min_score: Annotated[float | None, typer.Option(help="drop candidates below")] = None,
    absolute_margin: Annotated[
        float | None, typer.Option(help="drop if score + margin > lowest positive score")
    ] = None,
    relative_margin: Annotated[
        float | None, typer.Option(help="drop if score > p - |p| * margin (p: lowest positive)")
    ] = None,
    sampling: Annotated[str, typer.Option(help="top or random")] = "top",
    seed: Annotated[int, typer.Option(help="seed for random sampling")] = 0,
    min_negatives: Annotated[int, typer.Option(help="skip queries with fewer negatives")] = 1,
    pool_depth: Annotated[int, typer.Option(help="cross-encoder: top-N per retriever")] = 30,
    denoise_margin: Annotated[
        float, typer.Option(help="cross-encoder: drop candidates within this of a positive")
    ] = 0.0,
    denoise: Annotated[bool, typer.Option(help="cross-encoder: drop positive-like")] = True,
    index: Annotated[IndexKind, typer.Option(help="FAISS index kind (dense)")] = "flat",
    k1: Annotated[float, typer.Option(help="BM25 k1")] = BM25Params.k1,
    b: Annotated[float, typer.Option(help="BM25 b")] = BM25Params.b,
    batch_size: Annotated[int, typer.Option(help="encoding batch size")] = 64,
    layout: Annotated[list[str] | None, typer.Option(help=f"one of {list(LAYOUTS)}")] = None,
    fmt: Annotated[list[str] | None, typer.Option("--format", help=f"{list(FORMATS)}")] = None,
    cache: Annotated[bool, typer.Option(help="reuse cached candidate lists")] = True,
    llm_backend: Annotated[str | None, typer.Option(help="llm: llama_cpp or openai")] = None,
    llm_model: Annotated[str | None, typer.Option(help="llm: .gguf path or model name")] = None,
    llm_base_url: Annotated[str | None, typer.Option(help="llm: OpenAI-compatible URL")] = None,
    llm_api_key_env: Annotated[
        str | None, typer.Option(help="llm: environment variable holding the API key")
    ] = None,
    llm_per_query: Annotated[int | None, typer.Option(help="llm: generations per query")] = None,
    llm_max_queries: Annotated[int | None, typer.Option(help="llm: first N queries only")] = None,
    llm_prompt_file: Annotated[Path | None, typer.Option(help="llm: TOML prompt template")] = None,
    home: Annotated[
        Path | None, typer.Option(help="data directory (default $HARDNEG_HOME)")
    ] = None,
) -> None:
    """Mine hard negatives for a BEIR split and write them (plus stats) to OUTPUT."""
    from hardneg.core.dense import DenseIndexConfig
    from hardneg.miners.filters import FilterConfig, Sampling
    from hardneg.miners.output import Format, Layout
    from hardneg.service.pipelines.mine import MineRequest, run_mining
    from hardneg.service.progress import ProgressBars
    from hardneg.service.settings import Settings

    if method not in MINE_METHODS:
        raise typer.BadParameter(f"choose one of {sorted(MINE_METHODS)}", param_hint="--method")
    settings = Settings(home=home) if home else Settings()
    filters = FilterConfig(
        num_negatives=num_negatives,
        range_min=range_min,
        range_max=range_max,
        max_score=max_score,
        min_score=min_score,
        absolute_margin=absolute_margin,
        relative_margin=relative_margin,
        sampling=cast(Sampling, sampling),
        seed=seed,
        min_negatives=min_negatives,
    )
    request = MineRequest(
        data=data,
        split=split,
        method=method,
        model=model,
        cross_encoder=cross_encoder,
        filters=filters,
        bm25=BM25Params(k1=k1, b=b),
        index=DenseIndexConfig(kind=index),
        batch_size=batch_size,
        pool_depth=pool_depth,
        denoise_margin=denoise_margin if denoise else None,
        layouts=cast(tuple[Layout, ...], _choices(layout, LAYOUTS, "--layout")),
        formats=cast(tuple[Format, ...], _choices(fmt, FORMATS, "--format")),
        use_cache=cache,
        options=_llm_options(
            llm_backend=llm_backend,
            llm_model=llm_model,
            llm_base_url=llm_base_url,
            llm_api_key_env=llm_api_key_env,
            llm_concurrency=settings.llm_concurrency,
            llm_per_query=llm_per_query,
            llm_max_queries=llm_max_queries,
            llm_prompt_file=str(llm_prompt_file) if llm_prompt_file else None,
        ),
    )
    with ProgressBars(console) as progress:
        result = run_mining(request, settings, output, progress)
    console.print(summary_table(result))


def register(app: typer.Typer) -> None:
    app.command("mine")(reported(mine))
