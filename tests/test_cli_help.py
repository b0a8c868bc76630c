"""``hardneg --help`` and ``hardneg COMMAND --help`` answer without loading the heavy stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import get_args

import pytest

from hardneg.service.cli import COMMANDS

HEAVY = ("torch", "transformers", "faiss", "sentence_transformers")

# run the real entry point (hardneg.service.cli:app) in a fresh interpreter, then list what the
# help imported; SystemExit is how click ends after printing the help
_PROBE = """
import json, sys
from hardneg.service.cli import app
try:
    app(sys.argv[1:], prog_name="hardneg")
except SystemExit as stop:
    code = stop.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
sys.__stderr__.write(json.dumps({{"code": code, "heavy": heavy}}) + "\\n")
"""

HELPS = [
    [],
    *([name] for name in COMMANDS),
    ["datasets", "download"],
    *(["train", kind] for kind in ("star", "adore", "baseline", "reranker")),
]


def _help(args: list[str]) -> tuple[dict[str, object], str]:
    run = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=set(HEAVY)), *args, "--help"],
        capture_output=True,
        text=True,
        env=os.environ | {"COLUMNS": "100"},
        timeout=120,
    )
    return json.loads(run.stderr.strip().splitlines()[-1]), run.stdout


@pytest.mark.parametrize("args", HELPS, ids=lambda a: " ".join(a) or "hardneg")
def test_help_imports_no_torch_transformers_or_faiss(args: list[str]) -> None:
    probe, out = _help(args)
    assert probe["code"] == 0, out
    assert probe["heavy"] == [], f"hardneg {' '.join(args)} --help imported {probe['heavy']}"
    assert "Usage" in out


def test_the_top_level_help_lists_every_command_with_its_own_help() -> None:
    """The one-line helps in cli.COMMANDS are what ``hardneg --help`` shows; each command's
    module really registers a command of that name."""
    from hardneg.service.cli import load_command

    _, out = _help([])
    for name, (_, short) in COMMANDS.items():
        assert name in out and short.split()[0] in out
        assert load_command(name).name == name


def test_the_lists_of_names_come_from_one_definition() -> None:
    from hardneg.core import bm25_scoring, index_params
    from hardneg.miners import job, spec
    from hardneg.service.jobs.registry import KINDS
    from hardneg.service.pipelines.experiment import profiles
    from hardneg.trainers import config, launch

    assert set(job.MINERS) == set(spec.METHODS) == set(get_args(spec.Method))
    assert set(bm25_scoring._VARIANTS) == set(get_args(index_params.BM25Method))
    assert set(launch.trainer_for.__code__.co_consts) >= set(config.TRAINER_KINDS)
    assert set(profiles.PROFILES) == set(get_args(profiles.ProfileName))
    assert set(profiles.DEFAULT_METHODS) <= set(profiles.METHODS)
    assert {"mine", "train", "evaluate", "generate", "experiment", "adapt", "corpus"} == set(KINDS)
