"""``hardneg train ...``: the sub-commands registered on a Typer app, run in-process."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from hardneg.core.negatives import MinedQuery, write_mined
from hardneg.service.commands.train import register
from tests.conftest import write_beir
from tests.test_train_trainers import DOCS, MINED


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """hardneg (test copy)"""

    register(app)
    return app


def test_train_commands_are_registered() -> None:
    result = CliRunner().invoke(_app(), ["train", "--help"])
    assert result.exit_code == 0
    for kind in ("star", "adore", "baseline", "reranker"):
        assert kind in result.output


def test_bad_config_file_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("learning_rat: 1e-5\n")
    result = CliRunner().invoke(_app(), ["train", "star", "--config", str(config)])
    assert result.exit_code == 2
    assert "learning_rat: Extra inputs are not permitted" in result.output
    assert "run.yaml" in result.output


def test_train_star_from_a_config_file_and_flags(tmp_path: Path) -> None:
    data = write_beir(tmp_path / "beir")
    negatives = tmp_path / "mined.jsonl"
    rows = [
        MinedQuery(qid, query, (pos,), (DOCS[pos],), tuple(negs), tuple(DOCS[n] for n in negs))
        for qid, query, pos, negs in MINED
    ]
    write_mined(negatives, rows, {})
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"train": {"per_device_batch_size": 2, "max_steps": 1}}))
    output = tmp_path / "model"
    args = ["train", "star", "--config", str(config), "--negatives", str(negatives)]
    args += ["--output", str(output), "--data", str(data), "--home", str(tmp_path / "ws")]
    args += ["--set", "max_doc_length=32", "--learning-rate", "1e-4"]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    flat = "".join(result.output.split())  # rich wraps long paths
    assert "ndcg@10" in flat and f"modelwrittento{output}" in flat
    info = json.loads((output / "hardneg_training.json").read_text())
    assert info["config"]["model"]["max_doc_length"] == 32
    assert info["config"]["train"]["learning_rate"] == 1e-4
    assert info["config"]["train"]["per_device_batch_size"] == 2
