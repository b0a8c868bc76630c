"""The training loop every trainer shares: accumulation, mixed precision, clipping, warmup,
evaluation before/during/after, best-checkpoint selection and early stopping on the dev split,
checkpoints and exact resume, data-parallel over ranks.

A trainer supplies a :class:`TrainingTask` (a forward module and a loss for the n-th micro-batch)
and an :class:`Evaluator`; the loop does the rest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.nn.parallel import DistributedDataParallel

from hardneg.core.atomic import write_text_atomic
from hardneg.core.progress import Progress, no_progress
from hardneg.trainers.checkpoint import (
    LoopState,
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from hardneg.trainers.config import TrainingConfig
from hardneg.trainers.distributed import (
    DistContext,
    all_reduce_sum,
    barrier,
    broadcast_object,
    gather_objects,
)
from hardneg.trainers.encoding import autocast
from hardneg.trainers.optim import build_optimizer, linear_warmup, warmup_steps

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
BEST_WEIGHTS = "best.pt"
SELECT_METRIC = "ndcg@10"


@dataclass(frozen=True)
class Selection:
    """The dev metric that picks the best checkpoint (and drives early stopping)."""

    metric: str = SELECT_METRIC
    higher_is_better: bool = True

    def improves(self, score: float, best: float | None) -> bool:
        if best is None:
            return True
        return score > best if self.higher_is_better else score < best


class Evaluator(Protocol):
    def splits(self) -> set[str]: ...

    def __call__(self, split: str, corpus_size: int) -> dict[str, float]: ...


LossFn = Callable[[torch.nn.Module, int], torch.Tensor]


@dataclass
class TrainingTask:
    name: str
    forward: torch.nn.Module  # called once per micro-batch (wrapped in DDP when distributed)
    weights: torch.nn.Module  # whose state_dict is checkpointed (the trainable model)
    micro_batches_per_epoch: int
    compute_loss: LossFn  # (forward module, micro-batch index) -> loss to backpropagate
    evaluator: Evaluator | None = None
    selection: Selection = field(default_factory=Selection)


@dataclass(frozen=True)
class TrainResult:
    output_dir: Path
    steps: int
    history: list[dict[str, Any]]
    before: dict[str, float] | None
    after: dict[str, float] | None
    best_step: int | None
    resumed_from: int | None
    seconds: dict[str, float] = field(default_factory=dict)


def total_steps(config: TrainingConfig, micro_batches_per_epoch: int) -> int:
    args = config.train
    if args.max_steps > 0:
        return args.max_steps
    micro = math.ceil(args.num_epochs * micro_batches_per_epoch)
    return max(1, micro // args.gradient_accumulation_steps)


class _Loop:
    def __init__(
        self, task: TrainingTask, config: TrainingConfig, ctx: DistContext, progress: Progress
    ) -> None:
        self.task, self.config, self.ctx = task, config, ctx
        self.args = config.train
        self.progress = progress if ctx.is_main else no_progress
        self.output_dir = self.args.output_dir
        self.state = LoopState(total_steps=total_steps(config, task.micro_batches_per_epoch))
        self.optimizer = build_optimizer(task.weights.named_parameters(), self.args)
        warmup = warmup_steps(self.state.total_steps, self.args.warmup_ratio)
        self.scheduler = linear_warmup(self.optimizer, warmup, self.state.total_steps)
        use_scaler = self.args.precision == "fp16" and ctx.device.startswith("cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self.forward: torch.nn.Module = task.forward
        if ctx.distributed:
            device_ids = [ctx.local_rank] if ctx.device.startswith("cuda") else None
            self.forward = DistributedDataParallel(
                task.forward,
                device_ids=device_ids,
                find_unused_parameters=True,  # e.g. BERT's pooler, unused by sentence embeddings
                broadcast_buffers=False,
            )
        self.resumed_from: int | None = None
        self.seconds = {"train": 0.0, "eval": 0.0}
        # the best dev step's weights, kept in memory (the same on every rank) and written only
        # inside a checkpoint: a checkpoint and the best weights it names are always one file
        self.best_weights: dict[str, torch.Tensor] | None = None

    # --- evaluation -------------------------------------------------------------------------
    def _evaluate(self, phase: str, split: str, corpus_size: int) -> dict[str, float] | None:
        evaluator = self.task.evaluator
        if evaluator is None:
            return None
        metrics: dict[str, float] | None = None
        if self.ctx.is_main:
            started = time.perf_counter()
            metrics = evaluator(split, corpus_size)
            self.seconds["eval"] += time.perf_counter() - started
            entry: dict[str, Any] = {"event": "eval", "phase": phase, "split": split}
            entry |= {"step": self.state.step, "corpus_size": corpus_size or "full"} | metrics
            self.state.history.append(entry)
            self._write_history()
            logger.info("%s eval %s step %d: %s", self.task.name, split, self.state.step, metrics)
        metrics = broadcast_object(metrics, self.ctx)  # type: ignore[assignment]
        return metrics

    def _intermediate_eval(self) -> None:
        evaluator, eval_args = self.task.evaluator, self.config.eval
        if evaluator is None:
            return
        dev = eval_args.dev_split if eval_args.dev_split in evaluator.splits() else None
        split = dev or eval_args.split
        metrics = self._evaluate("step", split, eval_args.eval_corpus_size)
        if dev is None or metrics is None:
            return
        score = metrics[self.task.selection.metric]
        if self.task.selection.improves(score, self.state.best_metric):
            self.state.best_metric, self.state.best_step = score, self.state.step
            self.state.stale_evals = 0
            self.best_weights = self._weights()
            return
        self.state.stale_evals += 1
        patience = eval_args.early_stopping_patience
        if patience and self.state.stale_evals >= patience:
            self.state.stopped_early = True
            logger.info(
                "%s: stopping early at step %d, %s has not improved for %d evaluations "
                "(best %.4f at step %s)", self.task.name, self.state.step,
                self.task.selection.metric, patience, self.state.best_metric, self.state.best_step,
            )  # fmt: skip

    def _write_history(self) -> None:
        lines = "".join(json.dumps(entry) + "\n" for entry in self.state.history)
        write_text_atomic(self.output_dir / METRICS_FILE, lines)

    # --- checkpoints ------------------------------------------------------------------------
    def _weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.task.weights.state_dict().items()}

    def _save(self) -> None:
        rngs = gather_objects(rng_state(), self.ctx)
        if self.ctx.is_main:
            payload = {
                "weights": self._weights(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "best": self._older_best(),
                "rng": rngs,
                "world_size": self.ctx.world_size,
            }
            save_checkpoint(self.output_dir, self.state, payload, self.args.save_total_limit)
        barrier(self.ctx)

    def _older_best(self) -> dict[str, torch.Tensor] | None:
        """The best weights when they are not the current ones (a checkpoint's ``best``)."""
        best_step = self.state.best_step
        return None if best_step is None or best_step == self.state.step else self.best_weights

    def _resume(self) -> bool:
        folder = latest_checkpoint(self.output_dir) if self.args.resume else None
        if folder is None:
            return False
        state, payload = load_checkpoint(folder, "cpu")
        if state.total_steps != self.state.total_steps:
            raise ValueError(
                f"{folder} was written for {state.total_steps} steps, this run has "
                f"{self.state.total_steps}: use another output_dir or resume=false"
            )
        self.task.weights.load_state_dict(payload["weights"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        self.best_weights = _best_of(payload, state, folder.parent)
        if payload["world_size"] == self.ctx.world_size:
            set_rng_state(payload["rng"][self.ctx.rank])
        else:
            logger.warning("checkpoint from %d ranks: RNG streams restart", payload["world_size"])
        self.state = state
        self.resumed_from = state.step
        logger.info("resumed from %s (step %d/%d)", folder, state.step, state.total_steps)
        return True

    # --- one optimizer step -----------------------------------------------------------------
    def _step(self) -> float:
        accum = self.args.gradient_accumulation_steps
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for a in range(accum):
            micro = self.state.step * accum + a
            sync = not isinstance(self.forward, DistributedDataParallel) or a == accum - 1
            no_sync = contextlib.nullcontext() if sync else self.forward.no_sync()  # type: ignore[operator]
            with no_sync:
                with autocast(self.ctx.device, self.args.precision):
                    loss = self.task.compute_loss(self.forward, micro) / accum
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"{self.task.name}: loss {loss.item()} at step {self.state.step}"
                    )
                self.scaler.scale(loss).backward()
            total += float(loss.detach())
        self.scaler.unscale_(self.optimizer)
        if self.args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.task.weights.parameters(), self.args.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.state.step += 1
        return total

    def _log_loss(self, loss: float) -> None:
        mean = float(all_reduce_sum(torch.tensor(loss), self.ctx)) / self.ctx.world_size
        if self.ctx.is_main:
            lr = self.scheduler.get_last_lr()[0]
            self.state.history.append(
                {"event": "train", "step": self.state.step, "loss": mean, "lr": lr}
            )
            logger.info("%s step %d: loss %.4f lr %.2e", self.task.name, self.state.step, mean, lr)

    def run(self) -> TrainResult:
        eval_args = self.config.eval
        before = None
        if not self._resume() and eval_args.eval_before:
            before = self._evaluate("before", eval_args.split, 0)
        if before is None:
            before = _phase_metrics(self.state.history, "before")
        self.task.forward.train(self.config.model.dropout)
        total = self.state.total_steps
        while self.state.step < total and not self.state.stopped_early:
            started = time.perf_counter()
            loss = self._step()
            self.seconds["train"] += time.perf_counter() - started
            step = self.state.step
            if self.args.logging_steps and (step % self.args.logging_steps == 0 or step == total):
                self._log_loss(loss)
            if eval_args.eval_steps and step % eval_args.eval_steps == 0 and step < total:
                self._intermediate_eval()
                self.task.forward.train(self.config.model.dropout)
            last = step == total or self.state.stopped_early
            # the end is saved only when checkpoints are kept (with the early stop, so that a
            # resumed run does not train on); else the model folder written next replaces it
            periodic = bool(self.args.save_steps) and step % self.args.save_steps == 0
            save = self.args.keep_checkpoints if last else periodic
            if save:
                self._save()
            self.progress(step, total, f"training {self.task.name}")
        if eval_args.eval_steps and not self._evaluated_at_last_step():
            self._intermediate_eval()  # the last step competes for the best checkpoint too
        self._load_best()
        after = self._evaluate("after", eval_args.split, 0) if eval_args.eval_after else None
        if self.ctx.is_main:
            self._write_history()
        return TrainResult(
            self.output_dir,
            self.state.step,
            list(self.state.history),
            before,
            after,
            self.state.best_step,
            self.resumed_from,
            dict(self.seconds),
        )

    def _evaluated_at_last_step(self) -> bool:
        return any(
            e.get("event") == "eval" and e.get("phase") == "step" and e["step"] == self.state.step
            for e in self.state.history
        )

    def _load_best(self) -> None:
        if self.state.best_step is None or self.state.best_step == self.state.step:
            return
        if self.best_weights is None:  # only a run resumed from an old checkpoint without them
            logger.warning("%s: the best step's weights are lost; keeping the last step's",
                           self.task.name)  # fmt: skip
            return
        logger.info("restoring the best dev checkpoint (step %d)", self.state.best_step)
        self.task.weights.load_state_dict(self.best_weights)


def _best_of(
    payload: dict[str, Any], state: LoopState, root: Path
) -> dict[str, torch.Tensor] | None:
    """The best weights a checkpoint names: its ``best``, its own weights when it is the best
    step, or (a checkpoint written before ``best`` was kept inside) the old ``best.pt``."""
    if payload.get("best") is not None:
        return dict(payload["best"])
    if state.best_step is None:
        return None
    if state.best_step == state.step:
        return {k: v.clone() for k, v in payload["weights"].items()}
    legacy = root / BEST_WEIGHTS
    return torch.load(legacy, map_location="cpu") if legacy.is_file() else None


def _phase_metrics(history: list[dict[str, Any]], phase: str) -> dict[str, float] | None:
    for entry in history:
        if entry.get("event") == "eval" and entry.get("phase") == phase:
            return {k: v for k, v in entry.items() if isinstance(v, float)}
    return None


def train_loop(
    task: TrainingTask,
    config: TrainingConfig,
    ctx: DistContext,
    progress: Progress = no_progress,
) -> TrainResult:
    """Train ``task`` to its last step (resuming from the newest checkpoint), then evaluate."""
    return _Loop(task, config, ctx, progress).run()
