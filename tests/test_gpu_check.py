"""bench/gpu_check.sh --dry-run: the GPU check's steps (encode, dense mining, STAR and ADORE with
fp16 autocast, evaluation) run end to end on CPU at toy size, and write the JSON the GPU run
writes. No GPU is mocked: on CPU the encoder stays fp32, FAISS stays on the CPU and autocast is a
no-op, and the JSON says so."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STEPS = ["encode", "mine", "star", "adore", "evaluate"]


def test_gpu_check_dry_run_writes_every_step(scifact_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "gpu.json"
    env = os.environ | {
        "HARDNEG_HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(REPO / "src") + os.pathsep + str(REPO),
    }
    command = [str(REPO / "bench" / "gpu_check.sh"), "--dry-run"]
    command += ["--data", str(scifact_dir), "--output", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    result = json.loads(output.read_text())
    assert result["dry_run"] is True and result["command"] == "bench/gpu_check.sh --dry-run"
    assert result["size"]["precision"] == "fp16"
    environment = result["environment"]
    assert environment["cuda_available"] is False and environment["faiss_gpus"] == 0
    assert environment["encoder_dtype"] == "torch.float32"  # fp16 is for CUDA only
    assert list(result["steps"]) == STEPS
    assert all(step["ok"] and step["seconds"] > 0 for step in result["steps"].values())

    steps = result["steps"]
    zero_shot = steps["encode"]["metrics"]
    assert set(zero_shot) == {"bm25", "dense:all-MiniLM-L6-v2"}
    assert all(0 < m["ndcg@10"] <= 1 for m in zero_shot.values())
    assert steps["mine"]["stats"]["rows"] > 0 and steps["mine"]["stats"]["negatives"] > 0
    for trainer in ("star", "adore"):
        assert steps[trainer]["steps"] == result["size"]["steps"]
        assert steps[trainer]["eval_split"] == "test"
        assert 0 < steps[trainer]["metrics_after"]["ndcg@10"] <= 1
    # STAR starts from the zero-shot model; the evaluation scores the ADORE model it produced
    assert steps["star"]["metrics_before"]["ndcg@10"] == pytest.approx(
        zero_shot["dense:all-MiniLM-L6-v2"]["ndcg@10"], abs=1e-4
    )
    (final,) = steps["evaluate"]["metrics"].values()
    assert final["ndcg@10"] == pytest.approx(steps["adore"]["metrics_after"]["ndcg@10"], abs=1e-4)
    assert result["machine"]["gpu"] == "none"
