"""The ``experiment`` job kind: ``hardneg experiment`` on a stored corpus.

The run folder lives in the job's folder, so a retried attempt (a lost worker) continues from the
recorded stages. The report (JSON, Markdown, plots) is published as artifacts and the comparison
lands in the job's stats. The LLM is the server's (its settings), never one named in a request.
"""

from __future__ import annotations

from hardneg.service.jobs.context import (
    JobContext,
    JobOutcome,
    require_corpus,
    resolve_model_refs,
    run_folder,
)
from hardneg.service.pipelines.experiment.request import ExperimentSpec

RUN_FOLDER = "experiment"
REPORT_FILES = ("report.json", "report.md", "metrics.png", "scores.png", "curves.png")
MODEL_FIELDS = ("model", "cross_encoder")


def run(spec: ExperimentSpec, context: JobContext) -> JobOutcome:
    from hardneg.service.pipelines.experiment.run import run_experiment

    corpus = require_corpus(context)
    settings = context.settings
    spec = resolve_model_refs(spec, MODEL_FIELDS, settings, default="model")
    spec = spec.model_copy(update={"data": str(corpus.path), "llm": settings.llm_config()})
    folder = run_folder(context, RUN_FOLDER)
    result = run_experiment(spec, context.pipeline(folder))
    report = result.report
    keys = ("dataset", "profile", "queries", "stages", "budget", "baselines", "methods")
    verdict = ("best_method", "top_arm", "indistinguishable", "false_negative_probe")
    stats = {key: report[key] for key in (*keys, *verdict)}
    stats |= {"wall_seconds": report["wall_seconds"], "trims": report["trims"]}
    artifacts = {name: folder / name for name in REPORT_FILES if (folder / name).is_file()}
    return JobOutcome(stats=stats, artifacts=artifacts)
