"""The ``hardneg`` console command, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import write_beir


def _hardneg(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"HARDNEG_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "hardneg.service.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_evaluate_prints_a_table_and_writes_json(tiny_beir: Path, tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    run = _hardneg(
        "evaluate", "--data", str(tiny_beir), "--retriever", "bm25", "--retriever", "dense",
        "--output", str(out), home=tmp_path / "home",
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ndcg@10" in run.stdout and "bm25" in run.stdout
    payload = json.loads(out.read_text())
    assert [r["retriever"] for r in payload["results"]] == ["bm25", "dense:all-MiniLM-L6-v2"]
    assert payload["results"][1]["metrics"]["recall@100"] == 1.0
    # the dense run stored its corpus embeddings in the data directory
    assert list((tmp_path / "home" / "embeddings").rglob("*.npy"))


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "bad")
    with (folder / "corpus.jsonl").open("a") as handle:
        handle.write('{"_id": "d1", "text": "again"}\n')
    run = _hardneg("evaluate", "--data", str(folder), "--retriever", "bm25", home=tmp_path)
    assert run.returncode == 2
    assert "corpus.jsonl:6: duplicate '_id' 'd1'" in run.stdout.replace("\n", "")
    run = _hardneg("evaluate", "--data", str(folder), "--retriever", "sparse", home=tmp_path)
    assert run.returncode == 2 and "--retriever must be one of" in run.stdout


def test_unknown_dataset_name_is_refused_before_any_request(tmp_path: Path) -> None:
    run = _hardneg("datasets", "download", "../../etc", home=tmp_path)
    assert run.returncode == 2 and "invalid dataset name" in run.stdout


def test_mine_with_the_llm_method_writes_generated_negatives(tmp_path: Path) -> None:
    """``hardneg mine --method llm`` with the packaged SmolLM2, in-process (two queries)."""
    folder = write_beir(tmp_path / "tiny", split="train")
    out = tmp_path / "out"
    run = _hardneg(
        "mine", "--data", str(folder), "--method", "llm", "--output", str(out),
        "--llm-max-queries", "2", "--llm-per-query", "2", "--num-negatives", "1",
        home=tmp_path / "home",
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    stats = json.loads((out / "stats.json").read_text())
    assert "false_negative_probe" in stats
    rows = [json.loads(line) for line in (out / "mined.jsonl").read_text().splitlines()]
    assert {row["query_id"] for row in rows} <= {"q1", "q2"}
    for row in rows:
        assert all(i.startswith("gen:") for i in row["negative_ids"])
        assert row["method"] == "llm"
