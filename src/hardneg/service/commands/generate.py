"""``hardneg generate-queries``: LLM-written training queries for a corpus, with progress bars."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.console import Console
from rich.table import Table

from hardneg.miners.llm.backends import BACKENDS, Backend, BackendConfig
from hardneg.service.commands.errors import reported
from hardneg.service.commands.tables import key_value_table

if TYPE_CHECKING:  # the pipeline (torch, faiss) loads when the command runs, not for --help
    from hardneg.service.pipelines.generate import GenerateQueriesResult

logger = logging.getLogger(__name__)
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


def generate_queries(
    data: Annotated[str, typer.Option(help="BEIR folder, or a BEIR dataset name to download")],
    output: Annotated[Path, typer.Option(help="output folder (a BEIR folder, replaced whole)")],
    backend: Annotated[str, typer.Option(help="llama_cpp (in-process GGUF) or openai")] = (
        "llama_cpp"
    ),
    model: Annotated[
        str | None,
        typer.Option(help="llama_cpp: .gguf path (default SmolLM2-135M); openai: model name"),
    ] = None,
    base_url: Annotated[
        str, typer.Option(help="openai: endpoint base URL, e.g. http://127.0.0.1:8000/v1")
    ] = BackendConfig.base_url,
    api_key_env: Annotated[
        str, typer.Option(help="openai: environment variable holding the API key")
    ] = "OPENAI_API_KEY",
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="generations at once: llama_cpp sequences decoded together, openai requests "
            "in flight; 1 runs them one at a time (default $HARDNEG_LLM_CONCURRENCY)",
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="openai: seconds per attempt")] = 120.0,
    max_retries: Annotated[int, typer.Option(help="openai: retries per call")] = 4,
    threads: Annotated[int | None, typer.Option(help="llama_cpp: CPU threads")] = None,
    n_ctx: Annotated[int, typer.Option(help="llama_cpp: context window (tokens)")] = 2048,
    per_passage: Annotated[int, typer.Option(help="queries sampled per passage")] = 3,
    max_passages: Annotated[
        int, typer.Option(help="passages to use (a seeded sample); 0 for all")
    ] = 100,
    seed: Annotated[int, typer.Option(help="passage sample and first sampling seed")] = 0,
    round_trip: Annotated[str, typer.Option(help="round-trip retriever: bm25 or dense")] = "bm25",
    round_trip_k: Annotated[
        int, typer.Option(help="keep a query if its passage is in this top-k")
    ] = 10,
    encoder: Annotated[str | None, typer.Option(help="bi-encoder of the dense round trip")] = None,
    prompt_file: Annotated[
        Path | None, typer.Option(help="TOML prompt template (version, system, user)")
    ] = None,
    temperature: Annotated[float, typer.Option(help="sampling temperature")] = 0.8,
    max_tokens: Annotated[int, typer.Option(help="tokens per generated query")] = 48,
    skip_failures: Annotated[
        bool, typer.Option(help="count failed LLM calls instead of stopping")
    ] = False,
    cache: Annotated[bool, typer.Option(help="reuse cached LLM outputs")] = True,
    home: Annotated[
        Path | None, typer.Option(help="data directory (default $HARDNEG_HOME)")
    ] = None,
) -> None:
    """Write queries for a corpus's passages with an LLM; keep those that retrieve their passage."""
    from hardneg.service.pipelines.generate import (
        GenerateQueriesRequest,
        RoundTrip,
        run_generate_queries,
    )
    from hardneg.service.progress import ProgressBars
    from hardneg.service.settings import Settings

    if backend not in BACKENDS:
        raise typer.BadParameter(f"choose one of {list(BACKENDS)}", param_hint="--backend")
    if round_trip not in ("bm25", "dense"):
        raise typer.BadParameter("choose bm25 or dense", param_hint="--round-trip")
    settings = Settings(home=home) if home else Settings()
    llm = BackendConfig(
        backend=cast(Backend, backend),
        model=model,
        base_url=base_url,
        api_key_env=api_key_env or None,
        concurrency=concurrency or settings.llm_concurrency,
        timeout_s=timeout,
        max_retries=max_retries,
        n_ctx=n_ctx,
        n_threads=threads,
    )
    request = GenerateQueriesRequest(
        data=data,
        llm=llm,
        per_passage=per_passage,
        max_passages=max_passages or None,
        seed=seed,
        round_trip=cast(RoundTrip, round_trip),
        round_trip_k=round_trip_k,
        encoder=encoder,
        prompt_file=prompt_file,
        temperature=temperature,
        max_tokens=max_tokens,
        skip_failures=skip_failures,
        use_cache=cache,
    )
    with ProgressBars(console) as progress:
        result = run_generate_queries(request, settings, output, progress)
    console.print(summary_table(result))


def register(app: typer.Typer) -> None:
    app.command("generate-queries")(reported(generate_queries))
