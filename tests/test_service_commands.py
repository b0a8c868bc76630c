"""``hardneg serve`` / ``hardneg worker`` without Redis, and the in-process CLI without Redis."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import write_beir
from tests.test_service_support import HARDNEG, service_env, unique_prefix

NO_REDIS = "redis://:secret-password@127.0.0.1:1/0"  # nothing listens on port 1


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_without_redis_the_service_exits_and_says_how_to_start_one(
    command: str, tmp_path: Path
) -> None:
    env = service_env(unique_prefix(), tmp_path, HARDNEG_REDIS_URL=NO_REDIS)
    result = subprocess.run(
        [*HARDNEG, command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in result.stderr
    assert "docker compose up -d redis" in result.stderr and "redis-server" in result.stderr
    assert "secret-password" not in result.stdout + result.stderr  # no secrets in messages


def test_in_process_cli_needs_no_redis(tmp_path: Path) -> None:
    data = write_beir(tmp_path / "tiny")
    env = service_env(unique_prefix(), tmp_path / "home", HARDNEG_REDIS_URL=NO_REDIS)
    result = subprocess.run(
        [
            *HARDNEG,
            "evaluate",
            "--data",
            str(data),
            "--retriever",
            "bm25",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ndcg@10" in result.stdout.lower() or "nDCG@10" in result.stdout
