"""The quick profile's learning rate and steps, checked on validation (never on test).

    python -m bench.experiment_tuning --run DIR [--learning-rates 5e-5 1e-4 2e-4] [--steps 80]
    python -m bench.experiment_tuning --run DIR --precisions fp32 bf16 [--arms none dense]

Reads a finished (or at least trained-data-ready) experiment folder ``DIR`` (its ``data/`` and
``arms/``), trains the comparison stage ("STAR, frozen documents" in the quick profile) of the
control arm and the BM25 arm for each learning rate, evaluating on the ``val`` split every 10
steps, and writes the validation nDCG@10 curves to
``bench/results/experiment-tuning.json``. The test split is not read.

With ``--precisions``, each arm instead trains the profile's recipe (comparison stage at the
profile's learning rate, then ADORE from it) once per training precision, and the validation
curves and training seconds go under ``precision`` in the same file (the rest is kept).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.machine import machine_info
from bench.performance import merge_section
from hardneg.core.atomic import write_text_atomic
from hardneg.core.negatives import read_mined
from hardneg.core.workspace import Workspace
from hardneg.service.pipelines.experiment.plots import read_history
from hardneg.service.pipelines.experiment.profiles import QUICK
from hardneg.service.pipelines.experiment.training import Recipe, train
from hardneg.service.settings import Settings
from hardneg.trainers.config import TrainerKind, TrainingConfig

logger = logging.getLogger("bench.experiment_tuning")
REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "bench" / "results" / "experiment-tuning.json"


def curve(folder: Path) -> list[list[float]]:
    return [
        [int(e["step"]), round(float(e["ndcg@10"]), 4)]
        for e in read_history(folder)
        if e.get("event") == "eval" and e.get("split") == "val"
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=Path, required=True, help="an experiment output folder")
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[5e-5, 1e-4, 2e-4])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--arms", nargs="+", default=["none", "bm25"])
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    settings = Settings()
    recipe = Recipe(
        QUICK, settings.model, args.run / "data", settings.device, settings.encoder_backend
    )
    workspace = Workspace(settings.home)
    if args.precisions:
        precision_check(args, recipe, workspace)
        return
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="hardneg-tuning-") as temp:
        for arm in args.arms:
            training_file = args.run / "arms" / f"{arm}.jsonl"
            rows = sum(1 for _ in read_mined(training_file))
            for lr in args.learning_rates:
                output = Path(temp) / f"{arm}-{lr}"
                config = recipe.config(
                    str(training_file), output, args.steps, lr, QUICK_SEED, rows, eval_steps=10
                )
                train("star", config, workspace, lambda *_: None)
                results.setdefault(arm, {})[f"{lr:g}"] = curve(output)
                logger.info("%s lr %g: %s", arm, lr, results[arm][f"{lr:g}"])
    kept = json.loads(OUTPUT.read_text()) if OUTPUT.is_file() else {}
    payload = {k: v for k, v in kept.items() if k == "precision"} | {
        "stage": QUICK.first_stage,
        "split": "val",
        "metric": "ndcg@10",
        "profile_default": {"learning_rate": QUICK.star_learning_rate, "steps": QUICK.star_steps},
        "command": "python -m bench.experiment_tuning --run DIR --learning-rates "
        + " ".join(f"{lr:g}" for lr in args.learning_rates)
        + f" --steps {args.steps} --arms "
        + " ".join(args.arms),
        "curves": results,
        "machine": machine_info(),
    }
    write_text_atomic(OUTPUT, json.dumps(payload, indent=2) + "\n")
    logger.info("wrote %s", OUTPUT)


def precision_check(args: argparse.Namespace, recipe: Recipe, workspace: Workspace) -> None:
    """Validation curves and seconds of the profile's two stages, once per training precision."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="hardneg-tuning-") as temp:
        for arm in args.arms:
            training_file = str(args.run / "arms" / f"{arm}.jsonl")
            rows = sum(1 for _ in read_mined(Path(training_file)))
            for precision in args.precisions:
                same = replace(recipe, profile=replace(QUICK, precision=precision))
                star, adore = Path(temp) / f"{arm}-{precision}", Path(temp) / f"{arm}-{precision}-a"
                runs: dict[str, tuple[TrainerKind, TrainingConfig]] = {
                    "comparison": ("star", same.stage_one(training_file, star, QUICK_SEED, rows)),
                    "adore": ("adore", same.adore(training_file, star, adore, QUICK_SEED, rows)),
                }
                entry: dict[str, Any] = {}
                for stage, (kind, config) in runs.items():
                    started = time.perf_counter()
                    train(kind, config, workspace, lambda *_: None)
                    entry[stage] = {
                        "seconds": round(time.perf_counter() - started, 1),
                        "curve": curve(config.train.output_dir),
                    }
                results.setdefault(arm, {})[precision] = entry
                logger.info("%s %s: %s", arm, precision, entry)
    section = {
        "what": "the profile's comparison stage then ADORE, per training precision (autocast; "
        "losses in fp32), seed 13, validation nDCG@10 curves and wall seconds per stage",
        "command": "python -m bench.experiment_tuning --run DIR --precisions "
        + " ".join(args.precisions)
        + " --arms "
        + " ".join(args.arms),
        "runs": results,
        "machine": machine_info(),
    }
    merge_section(OUTPUT, "precision", section)
    logger.info("wrote %s", OUTPUT)


QUICK_SEED = 13

if __name__ == "__main__":
    main()
