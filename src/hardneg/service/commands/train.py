"""``hardneg train star|adore|baseline|reranker``: flags, or one JSON/YAML config file, or both
(flags win); the options are generated from :class:`hardneg.trainers.config.TrainingConfig`.
Rich progress bars; a before/after metrics table at the end.

Several processes: ``torchrun --nproc_per_node N -m hardneg.trainers.launch star --config f``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from hardneg.core.metrics import METRIC_NAMES
from hardneg.service.commands.spec_options import Flag, spec_command
from hardneg.trainers.config import TRAINER_KINDS, TrainerKind, TrainingConfig

if TYPE_CHECKING:  # loads the workspace (faiss) when a command runs, not for --help
    from hardneg.service.settings import Settings

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


FLAGS = (
    "negatives", Flag("output_dir", "output"), "model", "data", "split", "corpus",
    "document_model", "top_k", Flag("per_device_batch_size", "batch_size"),
    Flag("num_epochs", "epochs"), "max_steps", "learning_rate", "negatives_per_query",
    Flag("gradient_accumulation_steps", "accumulation"), "precision", "eval_steps", "save_steps",
    "seed", "device", "gradient_checkpointing",
)  # fmt: skip


def _run(kind: TrainerKind) -> Callable[[TrainingConfig, Settings, dict[str, Any]], None]:
    def run(config: TrainingConfig, settings: Settings, given: dict[str, Any]) -> None:
        from hardneg.service.commands.progress_bars import ProgressBars
        from hardneg.service.pipelines.train import TrainRequest, run_training

        request = TrainRequest(kind, config)
        with ProgressBars(console) as progress:
            info = run_training(request, settings, progress)
        console.print(metrics_table(info))
        console.print(f"model written to {request.config.train.output_dir}")

    return run


def register(app: typer.Typer) -> None:
    """Add ``hardneg train <kind>`` for every trainer."""
    train_app = typer.Typer(
        help="Train retrievers and rerankers on mined negatives.", no_args_is_help=True
    )
    for kind in TRAINER_KINDS:
        command = spec_command(TrainingConfig, FLAGS, _run(kind), doc=_HELP[kind])
        train_app.command(kind, help=_HELP[kind])(command)
    app.add_typer(train_app, name="train")
