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
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from hardneg.core.atomic import atomic_path
from hardneg.core.beir import BeirSplit
from hardneg.core.bm25 import BM25Params
from hardneg.core.cache import Cache
from hardneg.core.dense import DenseIndexConfig
from hardneg.core.negatives import meta_path_for
from hardneg.core.progress import Progress, no_progress
from hardneg.core.workspace import Workspace
from hardneg.miners.bm25 import mine_bm25
from hardneg.miners.cross_encoder import mine_cross_encoder
from hardneg.miners.dense import mine_dense
from hardneg.miners.disk_cache import DiskCache
from hardneg.miners.filters import FilterConfig
from hardneg.miners.job import MinedRun, MinerFn, MiningJob
from hardneg.miners.llm.mine import mine_llm
from hardneg.miners.llm.negatives import METHOD as LLM_METHOD
from hardneg.miners.output import FORMATS, LAYOUTS, Format, Layout, write_outputs
from hardneg.miners.probe import NOT_APPLICABLE, count_returned, hide_positives
from hardneg.miners.stats import write_stats
from hardneg.service.pipelines.data import load_dataset_split
from hardneg.service.settings import Settings

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"

# The dispatch point: method name -> miner. Every miner takes a MiningJob and returns a MinedRun.
METHODS: dict[str, MinerFn] = {
    "bm25": mine_bm25,
    "dense": mine_dense,
    "cross-encoder": mine_cross_encoder,
    "llm": mine_llm,
}


@dataclass(frozen=True)
class MineRequest:
    data: str  # a BEIR folder, or a BEIR dataset name to download
    split: str = "train"
    method: str = "bm25"
    model: str | None = None  # bi-encoder (dense, and the cross-encoder's dense pool)
    cross_encoder: str | None = None
    cross_encoder_max_length: int | None = None
    filters: FilterConfig = field(default_factory=FilterConfig)
    bm25: BM25Params = field(default_factory=BM25Params)
    index: DenseIndexConfig = field(default_factory=DenseIndexConfig)
    batch_size: int = 64
    max_length: int | None = None
    query_prompt: str = ""
    corpus_prompt: str = ""
    pool_depth: int = 30
    denoise_margin: float | None = 0.0
    layouts: tuple[Layout, ...] = LAYOUTS
    formats: tuple[Format, ...] = FORMATS
    use_cache: bool = True
    options: Mapping[str, object] = field(default_factory=dict)
    probe: bool = True  # also run the false-negative probe (hardneg.miners.probe) into stats


@dataclass(frozen=True)
class MineResult:
    output: Path
    files: Mapping[str, Path]
    stats: Mapping[str, object]
    seconds: Mapping[str, float]


def check_output(output: Path) -> None:
    """Refuse to replace anything but an earlier mine output (a folder with our manifest)."""
    if output.is_file():
        raise FileExistsError(f"output {output} is a file; give a folder path")
    if output.is_dir() and any(output.iterdir()) and not (output / MANIFEST_FILE).is_file():
        raise FileExistsError(
            f"output folder {output} is not empty and holds no {MANIFEST_FILE}; "
            "choose a new or empty folder"
        )


def make_job(
    request: MineRequest, settings: Settings, workspace: Workspace, cache: Cache | None
) -> MiningJob:
    split = load_dataset_split(
        request.data,
        request.split,
        workspace,
        settings.beir_base_url,
        timeout=settings.download_timeout_seconds,
    )
    return MiningJob(
        split=split,
        workspace=workspace,
        filters=request.filters,
        cache=cache,
        model=request.model or settings.model,
        cross_encoder=request.cross_encoder,
        cross_encoder_max_length=request.cross_encoder_max_length,
        device=settings.device,
        encoder_backend=settings.encoder_backend,
        batch_size=request.batch_size,
        max_length=request.max_length,
        bm25=request.bm25,
        index=request.index,
        query_prompt=request.query_prompt,
        corpus_prompt=request.corpus_prompt,
        pool_depth=request.pool_depth,
        denoise_margin=request.denoise_margin,
        options=request.options,
    )


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


def run_meta(request: MineRequest, run: MinedRun) -> dict[str, object]:
    return {
        "method": run.method,
        "data": request.data,
        "split": request.split,
        "filters": asdict(request.filters),
        "provenance": dict(run.provenance),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_run(
    output: Path,
    request: MineRequest,
    job: MiningJob,
    run: MinedRun,
    progress: Progress = no_progress,
    probe: Mapping[str, object] | None = None,
) -> tuple[dict[str, Path], dict[str, object]]:
    """Write every file into a temp folder, then rename it over ``output``."""
    meta = run_meta(request, run)
    with atomic_path(output) as temp:
        temp.mkdir()
        exports = write_outputs(
            temp,
            run.rows,
            meta,
            request.filters.num_negatives,
            request.layouts,
            request.formats,
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


def run_mining(
    request: MineRequest,
    settings: Settings,
    output: Path,
    progress: Progress = no_progress,
    cache: Cache | None = None,
) -> MineResult:
    """Mine ``request.method`` negatives and write them to ``output``; returns paths and stats.

    ``cache`` defaults to a ``DiskCache`` under the data directory (the service passes Redis).
    """
    miner = METHODS.get(request.method)
    if miner is None:
        raise ValueError(
            f"unknown mining method {request.method!r} (available: {', '.join(sorted(METHODS))})"
        )
    check_output(output)
    workspace = Workspace(settings.home)
    if cache is None and request.use_cache:
        cache = DiskCache(workspace.root / "cache")
    started = time.perf_counter()
    job = make_job(request, settings, workspace, cache)
    loaded = time.perf_counter()
    run = miner(job, progress)
    mined = time.perf_counter()
    probe: dict[str, object] | None = None
    if request.probe:
        if run.method == LLM_METHOD:
            probe = {"hidden_positives": None, "returned": None, "rate": None,
                     "note": NOT_APPLICABLE}  # fmt: skip
        else:
            probe = false_negative_probe(miner, job, request.filters.seed, progress)
    probed = time.perf_counter()
    files, stats = write_run(output, request, job, run, progress, probe)
    seconds = {
        "load": loaded - started,
        "mine": mined - loaded,
        "probe": probed - mined,
        "write": time.perf_counter() - probed,
    }
    logger.info("mined %d queries with %s into %s", len(run.rows), run.method, output)
    return MineResult(output, files, stats, seconds)
