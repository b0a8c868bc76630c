"""The GPU paths on one H100/H200, through the existing CLI commands, timed, into one JSON.

    bench/gpu_check.sh            # installs the gpu extra, then: python -m bench.gpu_check
    bench/gpu_check.sh --dry-run  # the same steps on CPU at toy size (tests/test_gpu_check.py)

1. environment: CUDA torch, faiss-gpu seeing the GPU (a dry run records what it sees instead);
2. encode: ``hardneg evaluate --retriever dense`` on SciFact: the bi-encoder loads in fp16 on
   CUDA, encodes the corpus, searches a FAISS index on the GPU (and BM25 beside it);
3. mine: ``hardneg mine --method dense`` with the full profile's 8 negatives per query;
4. star: ``hardneg train star`` with the full profile's recipe (batch 64, 4 negatives per step,
   lr 2e-5, documents up to 256 tokens, shared encoder) for a few hundred steps, fp16 autocast;
5. adore: ``hardneg train adore`` from the STAR model (top 200, lr 5e-5), fp16 autocast;
6. evaluate: ``hardneg evaluate --retriever dense --model <adore>``.

Every command runs in this one process (typer app, ``standalone_mode=False``), so the toy dry
run pays for the imports once. Sized for 8 minutes on one H200: full SciFact (5,183 documents,
809 training queries) and 300 + 300 steps.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.beir_slice import beir_slice
from bench.machine import machine_info

logger = logging.getLogger("bench.gpu_check")


@dataclass(frozen=True)
class Size:
    """How big each step is: the GPU run, or the toy dry run."""

    steps: int
    batch_size: int
    negatives_per_query: int
    num_negatives: int
    max_doc_length: int
    top_k: int
    precision: str


# the full profile's STAR/ADORE recipe (hardneg.service.pipelines.experiment.profiles.FULL)
GPU = Size(300, 64, 4, 8, 256, 200, "fp16")
TOY = Size(2, 2, 1, 2, 32, 10, "fp16")  # fp16 autocast is a no-op on CPU: the same code path


def cli(*args: str) -> None:
    """One ``hardneg`` command, in-process; a non-zero exit raises."""
    from hardneg.service.cli import app

    logger.info("$ hardneg %s", " ".join(args))
    try:
        app(list(args), standalone_mode=False)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise RuntimeError(f"hardneg {args[0]} exited {exc.code}") from None


def environment(dry_run: bool) -> dict[str, Any]:
    import faiss
    import torch

    from hardneg.core.dense import gpu_count
    from hardneg.core.encoders import load_encoder

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    encoder = load_encoder(device=device)
    facts = {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": cuda,
        "device_name": torch.cuda.get_device_name(0) if cuda else "cpu",
        "faiss": faiss.__version__,
        "faiss_gpus": gpu_count(),
        "encoder_dtype": str(next(encoder.parameters()).dtype),
    }
    if not dry_run and not (cuda and facts["faiss_gpus"] > 0):
        raise RuntimeError(f"no GPU for torch and FAISS: {facts}")
    if not dry_run and facts["encoder_dtype"] != "torch.float16":
        raise RuntimeError(f"the encoder did not load in fp16 on CUDA: {facts}")
    return facts


def dataset_folder(data: str) -> Path:
    """The BEIR folder ``--data`` names, found as the CLI finds it (``$HARDNEG_DATA_DIRS``)."""
    from hardneg.service.pipelines.data import find_dataset
    from hardneg.service.settings import Settings

    return find_dataset(data, Settings())


def read_json(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def evaluation(path: Path) -> dict[str, dict[str, float]]:
    """{retriever: {metric: value}} from ``hardneg evaluate --output``."""
    rows = read_json(path)["results"]
    return {row["retriever"]: row["metrics"] for row in rows}


def training(folder: Path) -> dict[str, Any]:
    info = read_json(folder / "hardneg_training.json")
    keep = ("steps", "eval_split", "metrics_before", "metrics_after")
    return {key: info.get(key) for key in keep}


def run_steps(data: str, size: Size, work: Path) -> dict[str, dict[str, Any]]:
    steps: dict[str, dict[str, Any]] = {}

    def step(name: str, action: Callable[[], Any]) -> None:
        started = time.monotonic()
        detail = action()
        steps[name] = {"ok": True, "seconds": round(time.monotonic() - started, 1), **detail}
        logger.info("%s: %.1fs %s", name, steps[name]["seconds"], detail)

    recipe = [
        *("--batch-size", str(size.batch_size), "--precision", size.precision),
        *("--max-steps", str(size.steps), "--save-steps", str(size.steps)),
        *("--set", f"max_doc_length={size.max_doc_length}", "--data", data),
    ]
    mined = work / "dense" / "mined.jsonl"
    star, adore = work / "star", work / "adore"

    def scores(name: str, *retriever: str) -> dict[str, Any]:
        out = work / f"{name}.json"
        cli("evaluate", "--data", data, *retriever, "--output", str(out))
        return {"metrics": evaluation(out)}

    def mine() -> dict[str, Any]:
        negatives = ("--num-negatives", str(size.num_negatives))
        cli("mine", "--data", data, "--method", "dense", *negatives, "--output", str(mined.parent))
        stats = read_json(mined.parent / "stats.json")
        return {"stats": {k: v for k, v in stats.items() if not isinstance(v, (dict, list))}}

    def train(trainer: str, output: Path, *extra: str) -> dict[str, Any]:
        cli("train", trainer, "--negatives", str(mined), "--output", str(output), *extra, *recipe)
        return training(output)

    def train_star() -> dict[str, Any]:
        per_query = ("--negatives-per-query", str(size.negatives_per_query))
        return train("star", star, *per_query, "--learning-rate", "2e-5")

    def train_adore() -> dict[str, Any]:
        start = ("--model", str(star), "--top-k", str(size.top_k))
        return train("adore", adore, *start, "--learning-rate", "5e-5")

    step("encode", lambda: scores("zero-shot", "--retriever", "bm25", "--retriever", "dense"))
    step("mine", mine)
    step("star", train_star)
    step("adore", train_adore)
    step("evaluate", lambda: scores("adore", "--retriever", "dense", "--model", str(adore)))
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, toy size")
    parser.add_argument("--data", default="scifact", help="BEIR folder or dataset name")
    parser.add_argument("--output", type=Path, default=Path("bench/results/gpu.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.monotonic()
    size = TOY if args.dry_run else GPU
    result: dict[str, Any] = {"dry_run": args.dry_run, "size": size.__dict__}
    with tempfile.TemporaryDirectory(prefix="hardneg-gpu-check-") as folder:
        work = Path(folder)
        data = args.data
        if args.dry_run:  # a slice of the dataset: 16 + 8 queries, about 60 documents
            data = str(beir_slice(dataset_folder(args.data), 16, 8, 40, 300).write(work / "data"))
        result["environment"] = environment(args.dry_run)
        result["steps"] = run_steps(data, size, work)
    result["seconds"] = round(time.monotonic() - started, 1)
    result["machine"] = machine_info()
    result["command"] = "bench/gpu_check.sh" + (" --dry-run" if args.dry_run else "")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    logger.info("wrote %s in %.0fs", args.output, result["seconds"])


if __name__ == "__main__":
    main()
