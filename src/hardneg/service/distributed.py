"""``torchrun`` entry point: corpus encoding and dense mining sharded over the process group.

    torchrun --nproc_per_node 2 -m hardneg.service.distributed encode --data DIR
    torchrun --nproc_per_node 2 -m hardneg.service.distributed mine --data DIR \\
        --split train --output OUT [--index flat|ivf|hnsw] [--num-negatives 3] [--spec F]

Every process runs the same command (gloo on CPUs, NCCL on GPUs, one GPU per rank); the work is
split by ``core.sharded`` through ``miners.dense``. ``encode`` leaves the corpus matrix in the
embedding store (under ``HARDNEG_HOME``); ``mine`` is ``run_mining`` on every rank and writes
the same output folder as ``hardneg mine --method dense`` (probe included), from rank 0. A
mine job or ``hardneg mine`` with ``processes > 1`` launches this (``pipelines.processes``).
Settings (home, model, device) are the service's.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import get_args

from hardneg.core.index_params import IndexKind
from hardneg.core.progress import Progress
from hardneg.core.sharded import EncodeOptions, Shards, encode_corpus_sharded
from hardneg.core.spec import build_spec, parse_assignments, read_spec_file
from hardneg.core.workspace import Workspace
from hardneg.miners.dense import ENCODE_CHUNK
from hardneg.miners.spec import MineSpec
from hardneg.service.pipelines.context import PipelineContext
from hardneg.service.pipelines.data import dataset_split
from hardneg.service.pipelines.mine import run_mining
from hardneg.service.settings import Settings
from hardneg.trainers.distributed import init_distributed, shutdown

logger = logging.getLogger(__name__)


def _log_progress(done: int, total: int, stage: str) -> None:
    logger.debug("%s: %d/%d", stage, done, total)


SPEC_FLAGS = ("model", "index", "num_negatives", "batch_size", "max_length", "query_prompt",
              "corpus_prompt")  # fmt: skip


def mine_spec(args: argparse.Namespace) -> MineSpec:
    """The dense :class:`MineSpec` of ``--spec`` (a JSON file), then the flags that were given,
    then ``--set key=value``."""
    flags = {name: getattr(args, name) for name in SPEC_FLAGS}
    flags = {name: value for name, value in flags.items() if value is not None}
    if args.no_cache:
        flags["cache"] = False
    first = read_spec_file(args.spec) if args.spec else {"method": "dense", "split": args.split}
    layers = [first, flags, parse_assignments(args.set)]
    return build_spec(MineSpec, layers, "command line")


def encode(args: argparse.Namespace, settings: Settings, progress: Progress) -> None:
    from hardneg.core.encoders import load_encoder

    spec = mine_spec(args)
    workspace = Workspace(settings.home)
    split = dataset_split(args.data, spec.split, settings)
    model = load_encoder(spec.model or settings.model, settings.device, spec.max_length)
    options = EncodeOptions(spec.corpus_prompt, spec.batch_size, ENCODE_CHUNK, progress)
    vectors = encode_corpus_sharded(workspace.embeddings, model, split.corpus, options)
    if Shards.current().is_main:
        logger.info("corpus embeddings: %s rows x %s", *vectors.shape)


def mine(args: argparse.Namespace, settings: Settings, progress: Progress) -> None:
    """``run_mining`` on every rank (``processes``: the group's size); rank 0 writes the output
    folder and, with ``--result``, its files, stats and seconds as JSON."""
    shards = Shards.current()
    given = mine_spec(args)
    spec = MineSpec.model_validate(given.model_dump() | {"processes": shards.world_size})
    result = run_mining(spec, args.data, PipelineContext(settings, args.output, progress))
    if shards.is_main:
        if args.result is not None:
            files = {name: str(path) for name, path in result.files.items()}
            report = {"files": files, "stats": result.stats, "seconds": result.seconds}
            args.result.write_text(json.dumps(report, default=str))
        logger.info(
            "mined over %d ranks into %s (%s)", shards.world_size, args.output, result.seconds
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Sharded encoding and dense mining (torchrun).")
    parser.add_argument("command", choices=["encode", "mine"])
    parser.add_argument("--data", required=True, help="BEIR folder or dataset name")
    parser.add_argument("--split", default="train", help="(without --spec)")
    parser.add_argument("--model", default=None, help="bi-encoder (default: the settings')")
    parser.add_argument("--output", type=Path, default=None, help="mine: output folder")
    parser.add_argument("--index", choices=get_args(IndexKind), default=None)
    parser.add_argument("--num-negatives", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--query-prompt", default=None)
    parser.add_argument("--corpus-prompt", default=None)
    parser.add_argument("--no-cache", action="store_true", help="mine: skip the candidate cache")
    parser.add_argument("--set", action="append", default=[], help="any MineSpec field: key=value")
    parser.add_argument("--spec", type=Path, default=None, help="a MineSpec file (JSON or YAML)")
    parser.add_argument("--result", type=Path, default=None, help="mine: rank 0's report (JSON)")
    args = parser.parse_args(argv)
    if args.command == "mine" and args.output is None:
        parser.error("mine needs --output")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    settings = Settings()
    ctx = init_distributed(settings.device)
    try:
        (encode if args.command == "encode" else mine)(args, settings, _log_progress)
    finally:
        shutdown(ctx)


if __name__ == "__main__":
    main()
