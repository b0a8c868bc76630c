"""``hardneg experiment``: which negatives help on this corpus?

On one BEIR corpus: score the base model zero-shot and BM25, then for each negative source (BM25,
dense, cross-encoder, LLM-written) mine with the same budget, train with the same recipe (STAR,
then ADORE from the STAR model) and score on the test split. The output folder holds the report
(``report.md``, ``report.json``, plots) and every intermediate artifact; each finished stage is
recorded under ``stages/``, so a rerun after a crash continues where it stopped (embeddings,
candidates and LLM outputs also come from the workspace caches).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardneg.core.atomic import write_text_atomic
from hardneg.core.beir import load_split
from hardneg.core.cache import Cache
from hardneg.core.encoders import load_encoder
from hardneg.core.progress import Progress, no_progress
from hardneg.core.workspace import Workspace
from hardneg.miners.disk_cache import DiskCache
from hardneg.miners.filters import FilterConfig
from hardneg.miners.llm.backends import BackendConfig
from hardneg.service.pipelines.data import resolve_dataset
from hardneg.service.pipelines.experiment.data import ExperimentData, prepare_data
from hardneg.service.pipelines.experiment.profiles import METHODS, QUICK, Profile
from hardneg.service.pipelines.experiment.report import (
    build_report,
    reranker_summary,
    write_report,
)
from hardneg.service.pipelines.experiment.scores import score_distributions
from hardneg.service.pipelines.generate import GenerateQueriesRequest, run_generate_queries
from hardneg.service.pipelines.mine import MineRequest, run_mining
from hardneg.service.settings import Settings
from hardneg.trainers.config import TrainerKind, TrainingConfig, config_from_mapping
from hardneg.trainers.evaluation import evaluate_bm25, evaluate_dense
from hardneg.trainers.launch import trainer_for

logger = logging.getLogger(__name__)

Stage = dict[str, Any]
REQUEST_FILE = "experiment.json"


@dataclass(frozen=True)
class ExperimentRequest:
    data: str = "scifact"  # a BEIR folder or dataset name
    profile: Profile = QUICK
    methods: tuple[str, ...] = METHODS
    model: str | None = None  # base bi-encoder (default: settings.model)
    cross_encoder: str | None = None  # None: train one on held-out training queries
    llm: BackendConfig = field(default_factory=BackendConfig)
    seed: int = 13

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"unknown or no methods {unknown}; choose among {', '.join(METHODS)}")


@dataclass(frozen=True)
class ExperimentResult:
    output: Path
    report: dict[str, Any]
    files: dict[str, Path]


class Stages:
    """Finished stages as JSON files: a rerun returns the recorded result instead of redoing it."""

    def __init__(self, folder: Path, progress: Progress) -> None:
        self.folder, self.progress = folder, progress
        self.seconds: dict[str, float] = {}

    def run(self, name: str, work: Callable[[], Stage]) -> Stage:
        path = self.folder / f"{name}.json"
        if path.is_file():
            recorded: Stage = json.loads(path.read_text())
            logger.info("stage %s: reusing the recorded result", name)
            self.seconds[name] = float(recorded.get("stage_seconds", 0.0))
            return recorded
        logger.info("stage %s", name)
        self.progress(0, 1, name)
        started = time.perf_counter()
        result = work() | {"stage_seconds": 0.0}
        result["stage_seconds"] = round(time.perf_counter() - started, 2)
        self.seconds[name] = result["stage_seconds"]
        write_text_atomic(path, json.dumps(result, indent=2, default=str))
        self.progress(1, 1, name)
        return result


class Experiment:
    """One run of the experiment into ``output`` (see the module docstring)."""

    def __init__(
        self,
        request: ExperimentRequest,
        settings: Settings,
        output: Path,
        progress: Progress,
        cache: Cache | None,
    ) -> None:
        self.request, self.settings, self.output = request, settings, output
        self.profile = request.profile
        self.progress = progress
        self.workspace = Workspace(settings.home)
        self.cache = cache if cache is not None else DiskCache(self.workspace.root / "cache")
        self.model = request.model or settings.model
        self.stages = Stages(output / "stages", progress)
        self.reranker: dict[str, Any] | None = None  # the cross-encoder trained here, if any

    # --- data -----------------------------------------------------------------------------
    def prepare(self) -> ExperimentData:
        settings = self.settings
        source = resolve_dataset(
            self.request.data,
            self.workspace,
            settings.beir_base_url,
            settings.data_dirs,
            self.progress,
        )
        return prepare_data(
            source,
            self.output / "data",
            self.profile.train_queries,
            self.profile.reranker_queries,
            self.request.seed,
            generate=lambda: self.generate_queries(source),
        )

    def generate_queries(self, source: Path) -> Path:
        folder = self.output / "generated"
        request = GenerateQueriesRequest(
            data=str(source),
            llm=self.request.llm,
            per_passage=1,
            max_passages=self.profile.generate_passages,
            seed=self.request.seed,
            encoder=self.model,
        )
        if not (folder / "qrels" / "train.tsv").is_file():
            run_generate_queries(request, self.settings, folder, self.progress, self.cache)
        return folder

    # --- baselines ------------------------------------------------------------------------
    def baselines(self, data: ExperimentData) -> dict[str, Stage]:
        def bm25() -> Stage:
            split = load_split(data.folder, "test")
            return evaluate_bm25(split, self.workspace, progress=self.progress).summary()

        def zero_shot() -> Stage:
            split = load_split(data.folder, "test")
            model = load_encoder(self.model, self.settings.device)
            result = evaluate_dense(
                split, model, self.workspace, name="zero-shot", progress=self.progress
            )
            return result.summary()

        return {
            "bm25": self.stages.run("eval-bm25", bm25),
            "zero-shot": self.stages.run("eval-zero-shot", zero_shot),
        }

    # --- negatives ------------------------------------------------------------------------
    def llm_options(self) -> dict[str, object]:
        """The miners' ``llm_*`` options for this request's backend."""
        llm = self.request.llm
        options: dict[str, object] = {
            "llm_backend": llm.backend,
            "llm_base_url": llm.base_url,
            "llm_max_tokens": self.profile.llm_max_tokens,
            "llm_max_positive_chars": self.profile.llm_max_positive_chars,
            "llm_concurrency": llm.concurrency,
            "llm_timeout_s": llm.timeout_s,
            "llm_max_retries": llm.max_retries,
        }
        if llm.model:
            options["llm_model"] = llm.model
        if llm.api_key_env:
            options["llm_api_key_env"] = llm.api_key_env
        return options

    def mine(
        self,
        data: ExperimentData,
        method: str,
        split: str,
        folder: Path,
        num_negatives: int,
        cross_encoder: str | None = None,
    ) -> Stage:
        profile = self.profile
        options = self.llm_options() if method == "llm" else {}
        request = MineRequest(
            data=str(data.folder),
            split=split,
            method=method,
            model=self.model,
            filters=FilterConfig(num_negatives=num_negatives, seed=self.request.seed),
            pool_depth=profile.pool_depth,
            cross_encoder=cross_encoder,
            cross_encoder_max_length=profile.reranker_max_length,
            layouts=("triplet",),
            formats=("jsonl",),
            options=options,
        )
        result = run_mining(request, self.settings, folder, self.progress, self.cache)
        return {
            "mined": str(result.files["mined"]),
            "stats_file": str(result.files["stats"]),
            "histogram": str(result.files["histogram"]),
            "stats": dict(result.stats),
            "seconds": dict(result.seconds),
        }

    def cross_encoder(self, data: ExperimentData) -> str:
        if self.request.cross_encoder:
            return self.request.cross_encoder
        if not data.reranker_queries:
            raise ValueError(
                "no held-out training queries to train a cross-encoder on; pass --cross-encoder"
            )
        profile = self.profile
        mined = self.stages.run(
            "reranker-negatives",
            lambda: self.mine(
                data,
                "bm25",
                "reranker",
                self.output / "reranker" / "mined",
                profile.reranker_negatives,
            ),
        )
        folder = self.output / "reranker" / "model"
        config = self.training_config(
            mined["mined"],
            folder,
            profile.reranker_steps,
            profile.reranker_learning_rate,
            negatives_per_query=profile.reranker_negatives,
            max_doc_length=profile.reranker_max_length,
            per_device_batch_size=8,
            freeze_documents=False,
            data=None,
        )
        self.stages.run("reranker-train", lambda: self.train("reranker", config))
        self.reranker = reranker_summary(folder, profile.reranker_negatives)
        return str(folder)

    # --- training -------------------------------------------------------------------------
    def training_config(
        self, negatives: str, output: Path, steps: int, learning_rate: float, **overrides: Any
    ) -> TrainingConfig:
        profile = self.profile
        values: dict[str, object] = {
            "model": self.model,
            "negatives": negatives,
            "output_dir": str(output),
            "data": str(self.output / "data"),
            "corpus": str(self.output / "data"),
            "dev_split": None,
            "per_device_batch_size": profile.batch_size,
            "negatives_per_query": profile.negatives_per_step,
            "max_steps": steps,
            "learning_rate": learning_rate,
            "max_doc_length": profile.max_doc_length,
            "freeze_documents": profile.freeze_documents,
            "eval_before": False,
            "eval_steps": profile.eval_steps,
            "save_steps": max(1, profile.eval_steps),
            "logging_steps": 4,
            "seed": self.request.seed,
            "top_k": profile.adore_top_k,
        }
        if self.settings.device:
            values["device"] = self.settings.device
        values |= overrides
        rows = _count_lines(Path(negatives))
        if rows < int(str(values["per_device_batch_size"])):
            logger.info("batch size cut to the %d training queries of %s", rows, negatives)
            values["per_device_batch_size"] = max(1, rows)
        return config_from_mapping(values, "experiment profile")

    def train(self, kind: TrainerKind, config: TrainingConfig) -> Stage:
        info = trainer_for(kind)(config, self.workspace, self.progress)
        return {"output": str(config.train.output_dir), "summary": info}

    def train_method(self, method: str, negatives: str) -> dict[str, Stage]:
        profile = self.profile
        root = self.output / "models" / method
        star = self.training_config(
            negatives, root / "star", profile.star_steps, profile.star_learning_rate
        )
        star_run = self.stages.run(f"train-{method}-star", lambda: self.train("star", star))
        # ADORE starts from the STAR query encoder; its frozen documents are STAR's document side
        document_model = self.model if profile.freeze_documents else str(root / "star")
        adore = self.training_config(
            negatives,
            root / "star_adore",
            profile.adore_steps,
            profile.adore_learning_rate,
            model=str(root / "star"),
            document_model=document_model,
            freeze_documents=False,
        )
        adore_run = self.stages.run(f"train-{method}-adore", lambda: self.train("adore", adore))
        return {"star": star_run, "star_adore": adore_run}

    # --- the whole run --------------------------------------------------------------------
    def run(self) -> ExperimentResult:
        started = time.perf_counter()
        data = self.prepare()
        baselines = self.baselines(data)
        methods: dict[str, dict[str, Stage]] = {}
        for method in self.request.methods:
            cross_encoder = self.cross_encoder(data) if method == "cross-encoder" else None
            work = functools.partial(
                self.mine,
                data,
                method,
                "train",
                self.output / "mined" / method,
                self.profile.num_negatives,
                cross_encoder,
            )
            mined = self.stages.run(f"mine-{method}", work)
            methods[method] = {"mining": mined} | self.train_method(method, mined["mined"])
        scores = self.stages.run(
            "scores",
            lambda: score_distributions(
                data.folder,
                {m: Path(v["mining"]["mined"]) for m, v in methods.items()},
                self.model,
                self.workspace,
                self.settings.device,
            ),
        )
        report = build_report(
            self.request,
            data,
            baselines,
            methods,
            scores,
            wall_seconds=time.perf_counter() - started,
            stage_seconds=self.stages.seconds,
            reranker=self.reranker,
        )
        files = write_report(self.output, report, methods, scores)
        return ExperimentResult(self.output, report, files)


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def run_experiment(
    request: ExperimentRequest,
    settings: Settings,
    output: Path,
    progress: Progress = no_progress,
    cache: Cache | None = None,
) -> ExperimentResult:
    """Run (or continue) the experiment into ``output``; returns the report and its files.

    ``cache`` defaults to a ``DiskCache`` under the data directory (the service passes Redis).
    """
    check_output(output, request)
    return Experiment(request, settings, output, progress, cache).run()


def describe(request: ExperimentRequest) -> dict[str, Any]:
    """What the recorded stages depend on: a rerun must ask for the same thing to reuse them."""
    return {
        "data": request.data,
        "profile": request.profile.to_dict(),
        "methods": list(request.methods),
        "model": request.model,
        "cross_encoder": request.cross_encoder,
        "llm": request.llm.describe(),
        "seed": request.seed,
    }


def check_output(output: Path, request: ExperimentRequest) -> None:
    """Create ``output`` for this request, or accept it when it holds the same experiment."""
    record = output / REQUEST_FILE
    wanted = json.loads(json.dumps(describe(request), default=str))
    if record.is_file():
        found = json.loads(record.read_text())
        if found != wanted:
            changed = sorted(k for k in wanted if found.get(k) != wanted[k])
            raise FileExistsError(
                f"{output} holds an experiment with other settings ({', '.join(changed)}); "
                "rerun with the same ones to continue it, or choose another --output"
            )
        return
    if output.is_dir() and any(output.iterdir()):
        raise FileExistsError(f"{output} is not empty and holds no experiment; choose a new folder")
    output.mkdir(parents=True, exist_ok=True)
    write_text_atomic(record, json.dumps(wanted, indent=2))
