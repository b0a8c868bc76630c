"""The ``mine`` job: hard negatives for a BEIR split, written atomically to an output folder.

The folder holds core's mined file (``mined.jsonl`` + ``mined.meta.json``), the
sentence-transformers layouts (``triplet``/``ntuple``/``labeled_list`` as JSONL and Parquet),
``stats.json``, ``scores.png`` and ``manifest.json``. It appears whole or not at all: the files
are written into a temp folder beside it, which is renamed into place at the end.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from hardneg.core.atomic import atomic_path
from hardneg.core.beir import BeirSplit
from hardneg.core.cache import Cache
from hardneg.core.negatives import meta_path_for
from hardneg.core.progress import Progress, no_progress
from hardneg.core.sharded import Shards
from hardneg.core.workspace import Workspace
from hardneg.miners.job import MinedRun, MinerFn, MiningJob, miner_for
from hardneg.miners.llm.negatives import METHOD as LLM_METHOD
from hardneg.miners.output import write_outputs
from hardneg.miners.probe import NOT_APPLICABLE, count_returned, hide_positives
from hardneg.miners.spec import MineSpec
from hardneg.miners.stats import write_stats
from hardneg.service.pipelines.context import PipelineContext
from hardneg.service.pipelines.data import dataset_split, find_dataset, refuse_foreign_output
from hardneg.service.pipelines.processes import mine_in_processes
from hardneg.service.settings import Settings

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class MineResult:
    output: Path
    files: Mapping[str, Path]
    stats: Mapping[str, object]
    seconds: Mapping[str, float]


def make_job(spec: MineSpec, data: str, settings: Settings, cache: Cache | None) -> MiningJob:
    """The job the miners get: ``spec`` (its bi-encoder defaulting to the settings'), the split."""
    workspace = Workspace(settings.home)
    split = dataset_split(data, spec.split, settings)
    if spec.model is None:
        spec = spec.model_copy(update={"model": settings.model})
    return MiningJob(spec, split, workspace, cache, settings.device, settings.encoder_backend)


def false_negative_probe(
    miner: MinerFn, job: MiningJob, seed: int, progress: Progress = no_progress
) -> dict[str, object]:
    """Mine the split's queries with two or more positives again, one positive hidden from the
    miner, and count how often it comes back as a negative (:mod:`hardneg.miners.probe`)."""
    split = job.split
    hidden = hide_positives(split.qrels, seed, split.queries)
    if not hidden.hidden:
        return {"hidden_positives": 0, "returned": 0, "rate": None,
                "note": "no query of the split has two positives"}  # fmt: skip
    probed = BeirSplit(
        split.name, split.corpus, {q: split.queries[q] for q in hidden.qrels}, hidden.qrels
    )
    # uncached: a side measurement, never served as a mining result
    run = miner(replace(job, split=probed, cache=None), progress)
    return count_returned(run.rows, hidden.hidden).to_json()


def run_meta(job: MiningJob, data: str, run: MinedRun) -> dict[str, object]:
    return {
        "method": run.method,
        "data": data,
        "split": job.spec.split,
        "filters": job.spec.filters.model_dump(),
        "provenance": dict(run.provenance),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_run(
    output: Path,
    data: str,
    job: MiningJob,
    run: MinedRun,
    progress: Progress = no_progress,
    probe: Mapping[str, object] | None = None,
) -> tuple[dict[str, Path], dict[str, object]]:
    """Write every file into a temp folder, then rename it over ``output``."""
    spec = job.spec
    meta = run_meta(job, data, run)
    with atomic_path(output) as temp:
        temp.mkdir()
        exports = write_outputs(
            temp,
            run.rows,
            meta,
            spec.filters.num_negatives,
            spec.layouts,
            spec.formats,
            progress,
        )
        extra: dict[str, object] = {
            "exports": {"rows": dict(exports.rows), "left_out": dict(exports.left_out)}
        }
        if probe is not None:
            extra["false_negative_probe"] = dict(probe)
        stats_path, png_path, stats = write_stats(temp, run, job.split.qrels, extra)
        relative = {
            "mined": exports.mined,
            "mined_meta": meta_path_for(exports.mined),
            "stats": stats_path,
            "histogram": png_path,
        } | dict(exports.files)
        names = {name: path.name for name, path in relative.items()}
        manifest = meta | {"files": names}
        (temp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str))
    files = {name: output / filename for name, filename in names.items()}
    return files | {"manifest": output / MANIFEST_FILE}, stats


def run_mining(spec: MineSpec, data: str, context: PipelineContext) -> MineResult:
    """Mine ``spec.method`` negatives for ``data`` (a BEIR folder or dataset name) into
    ``context.output``; returns paths and stats.

    ``spec.cache`` false mines without a cache. A dense spec with ``processes > 1`` runs in that
    many ``torch.distributed`` processes (``pipelines.processes``; inside them, every rank calls
    this and rank 0 writes the output): the same negatives as one process.
    """
    settings, output, progress = context.settings, context.output, context.progress
    shards = Shards.current() if spec.processes > 1 else Shards()
    if spec.processes > 1 and not shards.distributed:
        started = time.perf_counter()
        folder = str(find_dataset(data, settings, progress))
        launched = mine_in_processes(spec, folder, context)
        seconds = dict(launched.seconds) | {"processes": time.perf_counter() - started}
        return MineResult(output, launched.files, launched.stats, seconds)
    miner = miner_for(spec.method)
    if shards.is_main:
        refuse_foreign_output(output, MANIFEST_FILE)
    cache = context.cache_or_disk() if spec.cache else None
    started = time.perf_counter()
    job = make_job(spec, data, settings, cache)
    loaded = time.perf_counter()
    run = miner(job, progress)
    mined = time.perf_counter()
    probe: dict[str, object] | None = None
    if spec.probe:
        if run.method == LLM_METHOD:
            probe = {"hidden_positives": None, "returned": None, "rate": None,
                     "note": NOT_APPLICABLE}  # fmt: skip
        else:
            probe = false_negative_probe(miner, job, spec.filters.seed, progress)
    probed = time.perf_counter()
    files: dict[str, Path] = {}
    stats: dict[str, object] = {}
    if shards.is_main:
        files, stats = write_run(output, data, job, run, progress, probe)
    shards.barrier()  # the output is in place before any rank returns
    seconds = {
        "load": loaded - started,
        "mine": mined - loaded,
        "probe": probed - mined,
        "write": time.perf_counter() - probed,
    }
    logger.info("mined %d queries with %s into %s", len(run.rows), run.method, output)
    return MineResult(output, files, stats, seconds)
