"""The ``evaluate`` job: one retriever on one BEIR split."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from hardneg.core.backends import BackendChoice
from hardneg.core.encoders import load_encoder
from hardneg.core.progress import Progress, no_progress
from hardneg.core.workspace import Workspace
from hardneg.service.pipelines.data import dataset_split
from hardneg.service.settings import Settings
from hardneg.service.specs import EvaluateSpec
from hardneg.trainers.evaluation import RetrievalEvaluation, evaluate_bm25, evaluate_dense
from hardneg.trainers.output import DUAL_FILE, load_dual_encoder

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)


def load_models(
    name: str, device: str | None, backend: BackendChoice, workspace: Workspace
) -> tuple[SentenceTransformer, SentenceTransformer]:
    """(query encoder, document encoder): the two sides of a query-encoder folder (the query
    tower by torch, the frozen documents by the backend they were trained against), else one
    model twice, run by ``backend``."""
    folder = Path(name).expanduser()
    if (folder / DUAL_FILE).is_file():
        return load_dual_encoder(folder, device, workspace.encoder_exports)
    model = load_encoder(name, device, None, backend, workspace.encoder_exports)
    return model, model


def run_evaluation(
    spec: EvaluateSpec, data: str, settings: Settings, progress: Progress = no_progress
) -> RetrievalEvaluation:
    """One retriever on one split; the caller writes what it wants of the result (the command
    a metrics file, the job its artifacts)."""
    workspace = Workspace(settings.home)
    split = dataset_split(data, spec.split, settings, progress)
    logger.info(
        "%s: %d documents, %d %s queries",
        data,
        len(split.corpus),
        len(split.queries),
        split.name,
    )
    if spec.retriever == "bm25":
        result = evaluate_bm25(split, workspace, spec.bm25, progress)
    else:
        model_name = spec.model or settings.model
        query_model, doc_model = load_models(
            model_name, settings.device, settings.encoder_backend, workspace
        )
        result = evaluate_dense(
            split,
            doc_model,
            workspace,
            spec.dense_search,
            name=f"dense:{model_name}",
            progress=progress,
            query_model=query_model,
        )
    return result
