"""The README's main command, timed: ``hardneg experiment --profile quick`` on SciFact.

    python -m bench.experiment [--queries human|generated] [--home DIR] [--keep-home]
                               [--skip-dashboard]

Runs the command as a user would (a subprocess, ``HARDNEG_DATA_DIRS=../shared/data/beir``) in a
fresh data directory unless ``--keep-home`` (then cached embeddings, candidates and generations
are reused and the wall time says so), copies the report and plots into
``bench/results/experiment-quick-scifact/`` (``experiment-generated-scifact/`` with
``--queries generated``) with the wall time, the machine and its load, then runs the dashboard
test in headless Chromium to save its screenshots beside them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.machine import machine_info
from hardneg.core.atomic import write_text_atomic

logger = logging.getLogger("bench.experiment")

REPO = Path(__file__).resolve().parents[1]
RESULTS = {
    "human": REPO / "bench" / "results" / "experiment-quick-scifact",
    "generated": REPO / "bench" / "results" / "experiment-generated-scifact",
}
REPORT_FILES = ("report.json", "report.md", "metrics.png", "scores.png", "curves.png")


def run_command(home: Path, log: Path, queries: str) -> float:
    env = os.environ | {
        "HARDNEG_HOME": str(home),
        "HARDNEG_DATA_DIRS": str(REPO.parent / "shared" / "data" / "beir"),
        "COLUMNS": "160",
    }
    command = [sys.executable, "-m", "hardneg.service.cli", "experiment", "--profile", "quick"]
    if queries != "human":
        command += ["--queries", queries]
    started = time.perf_counter()
    with log.open("w") as handle:
        subprocess.run(command, env=env, stdout=handle, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, default=Path("/tmp/hardneg-bench-experiment/home"))
    parser.add_argument("--queries", choices=sorted(RESULTS), default="human")
    parser.add_argument("--keep-home", action="store_true")
    parser.add_argument("--skip-dashboard", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.home.exists() and not args.keep_home:
        shutil.rmtree(args.home)
    args.home.mkdir(parents=True, exist_ok=True)
    results = RESULTS[args.queries]
    results.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    log = results / "command.log"
    wall = run_command(args.home, log, args.queries)
    report_dir = args.home / "experiments" / "scifact-quick"
    for name in REPORT_FILES:
        shutil.copyfile(report_dir / name, results / name)
    report = json.loads((results / "report.json").read_text())
    report |= {
        "wall_seconds": round(wall, 1),
        "command": "HARDNEG_DATA_DIRS=../shared/data/beir hardneg experiment --profile quick"
        + ("" if args.queries == "human" else f" --queries {args.queries}"),
        "fresh_data_directory": not args.keep_home,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "machine": machine_info(),
    }
    write_text_atomic(results / "report.json", json.dumps(report, indent=2) + "\n")
    logger.info("experiment: %.0f s; report in %s", wall, results)
    if not args.skip_dashboard:
        env = os.environ | {"HARDNEG_SCREENSHOT_DIR": str(results)}
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "tests/test_dashboard.py"],
            cwd=REPO,
            env=env,
            check=True,
        )


if __name__ == "__main__":
    main()
