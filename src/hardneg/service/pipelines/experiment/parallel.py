"""Training an experiment's (arm, seed) runs in several processes at once, on a CPU.

A training step of the quick profile is a few small matrix products (16 short queries through
MiniLM), which two threads of one process share poorly: on the 2-core CPU two one-thread
processes made 1.42x the steps per second of one two-thread process. So on a CPU the runs of
step 3 of the experiment go to a pool of worker processes (``Settings.train_processes``; by
default 2 where there are 2 or more cores, 1 on a GPU), each limited to its share of the cores.

A worker builds the same :class:`~hardneg.service.pipelines.experiment.run.Experiment` and
trains one (arm, seed) through it, so its stages are recorded in the experiment's ``stages/``
files exactly as in one process; the parent's training loop then reads them back, as a rerun
continuing a stopped experiment does. A failed or cancelled run stops the pool and leaves only
what a crash would: recorded stages, and checkpoints that a rerun resumes from.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hardneg.core.progress import Progress

logger = logging.getLogger(__name__)


def training_stage(arm: str, seed: int, stage: str) -> str:
    """The recorded stage name of one training stage ("star", "adore") of an (arm, seed)."""
    return f"train-{arm}-s{seed}-{stage}"


@dataclass(frozen=True)
class ArmRun:
    """One arm's training with one seed: both stages, into the experiment's folders."""

    arm: str
    training_file: str
    rows: int
    seed: int

    @property
    def last_stage(self) -> str:
        return training_stage(self.arm, self.seed, "adore")


def worker_count(requested: int | None, device: str | None) -> int:
    """``requested``, else 2 on a CPU with two or more cores and 1 on a GPU."""
    from hardneg.core.encoders import pick_device  # imports faiss: not for `--help`

    if requested is not None:
        return requested
    if not pick_device(device).startswith("cpu"):
        return 1
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def _limit_threads(threads: int) -> None:
    import faiss
    import torch

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)


def train_in_parallel(
    runs: Sequence[ArmRun],
    job: Callable[[ArmRun], object],
    workers: int,
    progress: Progress,
) -> None:
    """Run ``job`` (a picklable function recording the run's stages) for every run, ``workers``
    at a time in spawned processes of ``cpu_count // workers`` threads each."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    logger.info("training %d runs in %d processes of %d thread(s)", len(runs), workers, threads)
    context = multiprocessing.get_context("spawn")
    pool = context.Pool(workers, initializer=_limit_threads, initargs=(threads,))
    try:
        for done, _ in enumerate(pool.imap_unordered(job, runs), start=1):
            progress(done, len(runs), "training arms")
        pool.close()
    except BaseException:
        pool.terminate()  # a failure or a cancel stops every run; recorded stages stay
        raise
    finally:
        pool.join()
