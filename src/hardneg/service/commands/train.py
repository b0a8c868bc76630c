"""``hardneg train star|adore|baseline|reranker``: flags, or one JSON/YAML config file, or both
(flags win). Rich progress bars; a before/after metrics table at the end.

Several processes: ``torchrun --nproc_per_node N -m hardneg.trainers.launch star --config f``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hardneg.core.metrics import METRIC_NAMES
from hardneg.service.commands.choices import TRAINER_KINDS, Precision
from hardneg.service.commands.errors import reported

if TYPE_CHECKING:  # the trainers (torch) load when a command runs, not for --help
    from hardneg.trainers.config import TrainingConfig

logger = logging.getLogger(__name__)
console = Console()

_HELP = {
    "star": "STAR: shared encoder, static hard negatives + in-batch random negatives.",
    "adore": "ADORE: query encoder trained on dynamic negatives from a frozen document index.",
    "baseline": "Baseline: sentence-transformers MultipleNegativesRankingLoss, mined negatives.",
    "reranker": "Cross-encoder reranker from a base model, on positives + mined negatives.",
    "margin-mse": "GPL-style MarginMSE on the teacher scores of a scored negatives file.",
}


def metrics_table(info: dict[str, Any]) -> Table:
    table = Table(title=f"{info['trainer']}: {info['steps']} steps, split {info['eval_split']}")
    table.add_column("metric")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    before, after = info.get("metrics_before") or {}, info.get("metrics_after") or {}
    for name in METRIC_NAMES:
        table.add_row(
            name,
            f"{before[name]:.4f}" if name in before else "-",
            f"{after[name]:.4f}" if name in after else "-",
        )
    return table


def build_config(config_file: Path | None, flags: dict[str, object]) -> TrainingConfig:
    """Config file (if any), then the flags that were given."""
    from hardneg.trainers.config import config_from_mapping, load_config

    given = {k: v for k, v in flags.items() if v is not None}
    if config_file is not None:
        return load_config(config_file, given)
    return config_from_mapping(given, "command line")


def _command(kind: str) -> Callable[..., None]:
    def command(
        config: Annotated[
            Path | None, typer.Option(help="JSON or YAML config (flags override it)")
        ] = None,
        negatives: Annotated[Path | None, typer.Option(help="mined-negatives JSONL")] = None,
        output: Annotated[Path | None, typer.Option(help="output model folder")] = None,
        model: Annotated[str | None, typer.Option(help="base model id or path")] = None,
        data: Annotated[
            str | None, typer.Option(help="BEIR folder or dataset name to evaluate on")
        ] = None,
        split: Annotated[str | None, typer.Option(help="evaluation split")] = None,
        corpus: Annotated[
            str | None, typer.Option(help="adore: BEIR folder whose corpus is indexed")
        ] = None,
        document_model: Annotated[
            str | None, typer.Option(help="adore: frozen document encoder")
        ] = None,
        top_k: Annotated[int | None, typer.Option(help="adore: dynamic negatives")] = None,
        batch_size: Annotated[int | None, typer.Option(help="queries per device")] = None,
        epochs: Annotated[float | None, typer.Option(help="training epochs")] = None,
        max_steps: Annotated[int | None, typer.Option(help="optimizer steps (overrides)")] = None,
        learning_rate: Annotated[float | None, typer.Option(help="peak learning rate")] = None,
        negatives_per_query: Annotated[int | None, typer.Option(help="hard negatives")] = None,
        accumulation: Annotated[int | None, typer.Option(help="gradient accumulation")] = None,
        precision: Annotated[Precision | None, typer.Option(help="fp32, fp16, bf16")] = None,
        eval_steps: Annotated[int | None, typer.Option(help="evaluate every N steps")] = None,
        save_steps: Annotated[int | None, typer.Option(help="checkpoint every N steps")] = None,
        seed: Annotated[int | None, typer.Option(help="random seed")] = None,
        device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ...")] = None,
        gradient_checkpointing: Annotated[
            bool | None, typer.Option(help="recompute activations to save memory")
        ] = None,
        set_: Annotated[
            list[str] | None,
            typer.Option("--set", help="any config field: key=value (repeatable)"),
        ] = None,
        home: Annotated[
            Path | None, typer.Option(help="data directory (default $HARDNEG_HOME)")
        ] = None,
    ) -> None:
        from hardneg.service.pipelines.train import TrainRequest, run_training
        from hardneg.service.progress import ProgressBars
        from hardneg.service.settings import Settings
        from hardneg.trainers.launch import parse_overrides

        flags: dict[str, object] = {
            "negatives": negatives,
            "output_dir": output,
            "model": model,
            "data": data,
            "split": split,
            "corpus": corpus,
            "document_model": document_model,
            "top_k": top_k,
            "per_device_batch_size": batch_size,
            "num_epochs": epochs,
            "max_steps": max_steps,
            "learning_rate": learning_rate,
            "negatives_per_query": negatives_per_query,
            "gradient_accumulation_steps": accumulation,
            "precision": precision,
            "eval_steps": eval_steps,
            "save_steps": save_steps,
            "seed": seed,
            "device": device,
            "gradient_checkpointing": gradient_checkpointing,
        }
        settings = Settings(home=home) if home else Settings()
        flags |= parse_overrides(set_ or [])
        request = TrainRequest(kind, build_config(config, flags))  # type: ignore[arg-type]
        with ProgressBars(console) as progress:
            info = run_training(request, settings, progress)
        console.print(metrics_table(info))
        console.print(f"model written to {request.config.train.output_dir}")

    command.__doc__ = _HELP[kind]
    return command


def register(app: typer.Typer) -> None:
    """Add ``hardneg train <kind>`` for every trainer."""
    train_app = typer.Typer(
        help="Train retrievers and rerankers on mined negatives.", no_args_is_help=True
    )
    for kind in TRAINER_KINDS:
        train_app.command(kind, help=_HELP[kind])(reported(_command(kind)))
    app.add_typer(train_app, name="train")
