"""Checkpoints that let a killed run continue exactly where it stopped.

A checkpoint folder ``<output>/checkpoints/checkpoint-<step>`` holds the trainable weights, the
optimizer, scheduler and grad-scaler states, every rank's RNG states and the loop state (step,
metrics history, best dev score). It is written under a temporary name and renamed, so a kill
leaves the previous complete checkpoint.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hardneg.core.atomic import atomic_path

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
_PREFIX = "checkpoint-"
_STATE_FILE = "trainer.pt"
_SUMMARY_FILE = "state.json"


@dataclass
class LoopState:
    """What the training loop needs to continue: mutable, owned by the loop."""

    step: int = 0  # optimizer steps taken
    total_steps: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float | None = None
    best_step: int | None = None
    stale_evals: int = 0  # dev evaluations in a row that did not beat the best
    stopped_early: bool = False  # early stopping ended the run before total_steps


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_root(output_dir: Path) -> Path:
    return output_dir / CHECKPOINTS


def list_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        if folder.name.startswith(_PREFIX) and (folder / _STATE_FILE).is_file():
            try:
                found.append((int(folder.name.removeprefix(_PREFIX)), folder))
            except ValueError:
                continue
    return sorted(found)


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def save_checkpoint(
    output_dir: Path,
    state: LoopState,
    payload: dict[str, Any],
    keep: int,
) -> Path:
    """Write ``payload`` (weights, optimizer, ...) and ``state`` atomically; prune old ones."""
    target = checkpoint_root(output_dir) / f"{_PREFIX}{state.step:08d}"
    with atomic_path(target) as temp:
        temp.mkdir()
        torch.save(payload | {"loop": asdict(state)}, temp / _STATE_FILE)
        summary = {"step": state.step, "total_steps": state.total_steps}
        (temp / _SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    for _, old in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    logger.info("checkpoint written: %s", target)
    return target


def load_checkpoint(
    folder: Path, device: str | torch.device = "cpu"
) -> tuple[LoopState, dict[str, Any]]:
    payload = torch.load(folder / _STATE_FILE, map_location=device, weights_only=False)
    loop = payload.pop("loop")
    return LoopState(**loop), payload


def save_weights(path: Path, weights: dict[str, torch.Tensor]) -> None:
    with atomic_path(path, suffix=".pt") as temp:
        torch.save(weights, temp)


def remove_checkpoints(output_dir: Path) -> None:
    shutil.rmtree(checkpoint_root(output_dir), ignore_errors=True)
