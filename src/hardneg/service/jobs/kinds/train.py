"""The ``train`` job kind: STAR, ADORE, the baseline or a reranker (``pipelines.train``).

Negatives come from a finished ``mine`` job (``negatives_job``); the job's corpus is the data
ADORE indexes and the evaluation split reported before and after training. ``config`` is the
trainers' :class:`~hardneg.trainers.config.TrainingConfig` (flat keys such as ``learning_rate``,
``max_steps``, or sections); its fields that name files or devices are the service's. The model
is written to ``<job>/model`` with checkpoints, so a retried attempt resumes from the newest
one; it is published as ``model.tar.gz`` and can be referred to as ``job:<id>`` by later jobs.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field

from hardneg.core.spec import Spec
from hardneg.miners.spec import MINED_FILE, SPLIT_PATTERN
from hardneg.service.jobs.context import JobContext, JobOutcome, ParamError, require_corpus
from hardneg.service.jobs.kinds.mine import MINED_FOLDER
from hardneg.service.jobs.paths import (
    JOB_ID,
    MODEL_ARTIFACT,
    job_dir,
    resolve_model_ref,
)
from hardneg.service.settings import Settings
from hardneg.trainers.config import TrainerKind, TrainingConfig, config_from_mapping

HISTORY_FILE = "metrics.jsonl"  # the trainers' metrics history (hardneg.trainers.loop)
SUMMARY_FILE = "hardneg_training.json"  # written last by the trainers: marks a finished run


class TrainJobSpec(Spec):
    """A train job: the trainer, the mine job whose negatives it reads, and its config (whose
    fields that name files, folders or devices are the service's)."""

    trainer: TrainerKind = "star"
    negatives_job: str = Field(pattern=JOB_ID.pattern, description="a succeeded mine job's id")
    model: str | None = Field(None, description="base model: hub id, 'job:<id>' or allowed path")
    document_model: str | None = Field(None, description="ADORE's frozen document encoder")
    eval_split: str | None = Field(
        "test", pattern=SPLIT_PATTERN, description="split reported before/after (null: none)"
    )
    config: TrainingConfig = Field(
        default_factory=TrainingConfig, description="trainer settings, e.g. {'max_steps': 100}"
    )

    def negatives_path(self, settings: Settings) -> Path:
        return job_dir(settings.home, self.negatives_job) / MINED_FOLDER / MINED_FILE


MODEL_FIELDS = ("model", "document_model")


def server_check(spec: TrainJobSpec, settings: Settings) -> None:
    if not spec.negatives_path(settings).is_file():
        raise ParamError("negatives_job", "no finished mine job with that id")


def announce_resume(folder: Path, context: JobContext) -> None:
    """Say in the job's events which checkpoint an attempt continues from."""
    from hardneg.trainers.checkpoint import list_checkpoints

    found = list_checkpoints(folder)
    if found:
        step = found[-1][0]
        context.event(f"attempt {context.attempt} resumes from the checkpoint at step {step}")


def run(params: TrainJobSpec, context: JobContext) -> JobOutcome:
    from hardneg.service.pipelines.train import TrainRequest, run_training

    corpus = require_corpus(context)
    settings = context.settings
    folder = context.output_dir / MODEL_ARTIFACT
    announce_resume(folder, context)
    service: dict[str, object] = {
        "output_dir": str(folder),  # checkpoints live here too: a retry resumes
        "negatives": str(params.negatives_path(settings)),
        "corpus": str(corpus.path),
        "resume": True,
        "model": resolve_model_ref(params.model or settings.model, settings),
    }
    if params.eval_split is not None:
        service |= {"data": str(corpus.path), "split": params.eval_split}
    if params.document_model is not None:
        service["document_model"] = resolve_model_ref(params.document_model, settings)
    config = config_from_mapping(service, "config", base=params.config)
    summary = run_training(TrainRequest(params.trainer, config), settings, context.progress)
    artifacts = {SUMMARY_FILE: folder / SUMMARY_FILE}
    results = None
    if (folder / HISTORY_FILE).is_file():
        artifacts[HISTORY_FILE] = folder / HISTORY_FILE
        results = HISTORY_FILE
    artifacts[MODEL_ARTIFACT] = folder  # published last, as model.tar.gz
    stats = {key: summary.get(key) for key in ("trainer", "steps", "best_step", "resumed_from")}
    stats |= {
        "metrics_before": summary.get("metrics_before"),
        "metrics_after": summary.get("metrics_after"),
        "eval_split": summary.get("eval_split"),
        "seconds": summary.get("seconds"),
        "model": f"job:{context.job_id}",
    }
    json.dumps(stats, default=str)  # fail here, not in the record, if a value cannot be stored
    return JobOutcome(stats=stats, artifacts=artifacts, results=results)
