"""The ``hardneg`` command line. Everything runs in-process; no Redis needed.

The sub-commands live in ``hardneg.service.commands.<module>``, each with a ``register(app)``.
They are imported only when one of them runs or shows its help: ``hardneg --help`` lists them
from the table below, so it never loads torch, transformers or faiss. Failures are turned into
one-line messages by ``hardneg.service.commands.errors`` (tracebacks with ``--verbose``).
"""

from __future__ import annotations

import importlib
import logging
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from hardneg.service.commands.errors import set_verbose

# command name -> (module under hardneg.service.commands, its one-line help in `hardneg --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "adapt": ("adapt", "Adapt a retriever to a corpus without training queries (GPL-style)."),
    "evaluate": ("evaluate", "Evaluate BM25 and/or a dense model on a BEIR split."),
    "datasets": ("datasets", "BEIR datasets: download one by name."),
    "experiment": (
        "experiment",
        "Compare the negative sources and a control arm on one corpus (a report).",
    ),
    "generate-queries": ("generate", "Write training queries for a corpus with an LLM."),
    "mine": ("mine", "Mine hard negatives for a BEIR split."),
    "train": ("train", "Train retrievers and rerankers on mined negatives."),
    "serve": ("serve", "Serve the REST API (needs Redis)."),
    "worker": ("worker", "Run queued jobs (needs Redis)."),
}


def load_command(name: str) -> Any:
    """Import the module of command ``name`` and build its click command."""
    module = importlib.import_module(f"hardneg.service.commands.{COMMANDS[name][0]}")
    holder = typer.Typer()
    module.register(holder)
    return typer.main.get_group(holder).commands[name]


class LazyGroup(TyperGroup):
    """A group whose sub-commands are imported on first use (listing them imports nothing)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in COMMANDS if n not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        if self._listing:  # the top-level help only needs each command's one-line help
            return TyperCommand(cmd_name, short_help=COMMANDS[cmd_name][1])
        self.commands[cmd_name] = load_command(cmd_name)
        return self.commands[cmd_name]

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    cls=LazyGroup,
    help="Hard negatives, dense-retriever training and BEIR evaluation.",
    no_args_is_help=True,
)


@app.callback()
def main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="debug logging, and tracebacks on errors")
    ] = False,
) -> None:
    set_verbose(verbose)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpcore", "sentence_transformers", "bm25s", "faiss"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


if __name__ == "__main__":
    app()
