"""A mine run with ``processes > 1``: the same run under ``torchrun`` on this machine.

``run_mining`` hands a dense spec asking for several processes here. This launches

    python -m torch.distributed.run --standalone --nproc_per_node N \\
        -m hardneg.service.distributed mine --spec SPEC.json --data DATA --output OUT --result R

(torch's own launcher: gloo on CPUs, NCCL with one GPU per rank; ``core.sharded`` splits the
corpus encoding and the query search) and waits for it; each rank runs ``run_mining`` inside the
process group, rank 0 writes ``OUT`` (whole or not at all, as in one process) and the result
file. The settings the ranks need (home, model, device, encoder backend, data folders) travel
as ``HARDNEG_*`` variables. Progress calls are made about once a second while the ranks work,
so a cancelled job stops them: the launcher and its ranks are one process group, killed together.
The ranks' candidate cache is the workspace's disk cache (the service's Redis cache stays with
the single-process path).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hardneg.miners.spec import MineSpec
from hardneg.service.pipelines.context import PipelineContext
from hardneg.service.settings import Settings

logger = logging.getLogger(__name__)

POLL_S = 1.0
STAGE = "dense: {n} processes (torchrun)"


@dataclass(frozen=True)
class Launched:
    """What rank 0 reported: the output's files, its stats, the seconds of each step."""

    files: Mapping[str, Path]
    stats: Mapping[str, object]
    seconds: Mapping[str, float]


def launch_command(
    processes: int, spec_file: Path, data: str, output: Path, result: Path
) -> list[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", str(processes), "-m", "hardneg.service.distributed", "mine"]
    command += ["--spec", str(spec_file), "--data", data, "--output", str(output)]
    return [*command, "--result", str(result)]


def rank_env(settings: Settings) -> dict[str, str]:
    """This process's environment with the settings the ranks read, as ``HARDNEG_*``."""
    env = dict(os.environ) | {
        "HARDNEG_HOME": str(settings.home),
        "HARDNEG_MODEL": settings.model,
        "HARDNEG_ENCODER_BACKEND": settings.encoder_backend,
        "HARDNEG_DATA_DIRS": os.pathsep.join(str(d) for d in settings.data_dirs),
    }
    if settings.device is not None:
        env["HARDNEG_DEVICE"] = settings.device
    else:
        env.pop("HARDNEG_DEVICE", None)
    return env


def check_devices(processes: int, device: str | None) -> None:
    """On GPUs every rank takes one (``cuda:LOCAL_RANK``): refuse more ranks than GPUs."""
    import torch

    if torch.cuda.is_available() and (device is None or device.startswith("cuda")):
        count = torch.cuda.device_count()
        if processes > count:
            raise ValueError(
                f"processes={processes} needs one GPU per process; this machine has {count}"
            )


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux ``/proc``; empty where it cannot be read)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with contextlib.suppress(OSError, ValueError):
                children = [int(c) for c in (task / "children").read_text().split()]
                found += children
                pending += children
    return found


def _stop(child: subprocess.Popen[bytes]) -> None:
    """Kill the launcher, its ranks and theirs, and reap the launcher.

    torchrun starts every rank in a session of its own (``start_new_session``), so killing the
    launcher's process group alone leaves the ranks running until their next collective finds
    the launcher's store gone; under load that took over 30 s. The ranks are found before the
    launcher dies (after, they belong to init), and each one's own group is killed with it.
    """
    ranks = _descendants(child.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    for pid in ranks:  # a group inside the launcher's session: never the worker's own
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
    child.wait()


def mine_in_processes(spec: MineSpec, data: str, context: PipelineContext) -> Launched:
    """Run ``spec`` in ``spec.processes`` ranks into ``context.output`` (``context.cache`` is not
    theirs); the files, stats and seconds rank 0 reported."""
    settings, output, progress = context.settings, context.output, context.progress
    check_devices(spec.processes, settings.device)
    stage = STAGE.format(n=spec.processes)
    with tempfile.TemporaryDirectory(prefix="hardneg-processes-") as scratch:
        folder = Path(scratch)
        spec_file, result, log = folder / "spec.json", folder / "result.json", folder / "ranks.log"
        spec_file.write_text(spec.model_dump_json(exclude={"backend"}))
        command = launch_command(spec.processes, spec_file, data, output, result)
        logger.info("mining in %d processes: %s", spec.processes, " ".join(command))
        with log.open("wb") as sink:
            child = subprocess.Popen(
                command, stdout=sink, stderr=subprocess.STDOUT, env=rank_env(settings),
                start_new_session=True,
            )  # fmt: skip
            try:
                while child.poll() is None:
                    progress(0, 0, stage)  # raises when the job is cancelled
                    time.sleep(POLL_S)
            except BaseException:
                _stop(child)
                raise
        if child.returncode != 0:
            tail = log.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"{spec.processes} mining processes failed:\n{tail}")
        progress(1, 1, stage)
        reported = json.loads(result.read_text())
    files = {name: Path(path) for name, path in reported["files"].items()}
    return Launched(files, reported["stats"], reported["seconds"])
