"""The quick profile's learning rate and steps, checked on validation (never on test).

    python -m bench.experiment_tuning --run DIR [--learning-rates 5e-5 1e-4 2e-4] [--steps 80]

Reads a finished (or at least trained-data-ready) experiment folder ``DIR`` (its ``data/`` and
``arms/``), trains the comparison stage ("STAR, frozen documents" in the quick profile) of the
control arm and the BM25 arm for each learning rate, evaluating on the ``val`` split every 10
steps, and writes the validation nDCG@10 curves to
``bench/results/experiment-tuning.json``. The test split is not read.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from bench.machine import machine_info
from hardneg.core.atomic import write_text_atomic
from hardneg.core.negatives import read_mined
from hardneg.core.workspace import Workspace
from hardneg.service.pipelines.experiment.plots import read_history
from hardneg.service.pipelines.experiment.profiles import QUICK
from hardneg.service.pipelines.experiment.training import Recipe, train
from hardneg.service.settings import Settings

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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    settings = Settings()
    recipe = Recipe(
        QUICK, settings.model, args.run / "data", settings.device, settings.encoder_backend
    )
    workspace = Workspace(settings.home)
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
    payload = {
        "stage": QUICK.first_stage,
        "split": "val",
        "metric": "ndcg@10",
        "profile_default": {"learning_rate": QUICK.star_learning_rate, "steps": QUICK.star_steps},
        "curves": results,
        "machine": machine_info(),
    }
    write_text_atomic(OUTPUT, json.dumps(payload, indent=2) + "\n")
    logger.info("wrote %s", OUTPUT)


QUICK_SEED = 13

if __name__ == "__main__":
    main()
