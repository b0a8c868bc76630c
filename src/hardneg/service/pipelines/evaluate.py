"""The ``evaluate`` job: one retriever on one BEIR split, metrics written as JSON."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from hardneg.core.atomic import write_text_atomic
from hardneg.core.backends import BackendChoice
from hardneg.core.bm25 import BM25Params
from hardneg.core.dense import DenseIndexConfig
from hardneg.core.encoders import load_encoder
from hardneg.core.progress import Progress, no_progress
from hardneg.core.workspace import Workspace
from hardneg.service.pipelines.data import load_dataset_split
from hardneg.service.settings import Settings
from hardneg.trainers.evaluation import RetrievalEvaluation, evaluate_bm25, evaluate_dense
from hardneg.trainers.output import DUAL_FILE, load_dual_encoder

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

Retriever = Literal["bm25", "dense"]


@dataclass(frozen=True)
class EvaluateRequest:
    data: str
    split: str = "test"
    retriever: Retriever = "bm25"
    model: str | None = None
    bm25: BM25Params = field(default_factory=BM25Params)
    index: DenseIndexConfig = field(default_factory=DenseIndexConfig)
    query_prompt: str = ""
    corpus_prompt: str = ""


def load_models(
    name: str, device: str | None, backend: BackendChoice, workspace: Workspace
) -> tuple[SentenceTransformer, SentenceTransformer]:
    """(query encoder, document encoder): the two sides of an ADORE folder (torch), else one
    model twice, run by ``backend``."""
    folder = Path(name).expanduser()
    if (folder / DUAL_FILE).is_file():
        return load_dual_encoder(folder, device)
    model = load_encoder(name, device, None, backend, workspace.encoder_exports)
    return model, model


def run_evaluation(
    request: EvaluateRequest,
    settings: Settings,
    output: Path | None = None,
    progress: Progress = no_progress,
) -> RetrievalEvaluation:
    workspace = Workspace(settings.home)
    split = load_dataset_split(
        request.data,
        request.split,
        workspace,
        settings.beir_base_url,
        settings.data_dirs,
        progress,
        timeout=settings.download_timeout_seconds,
    )
    logger.info(
        "%s: %d documents, %d %s queries",
        request.data,
        len(split.corpus),
        len(split.queries),
        split.name,
    )
    if request.retriever == "bm25":
        result = evaluate_bm25(split, workspace, request.bm25, progress)
    else:
        model_name = request.model or settings.model
        query_model, doc_model = load_models(
            model_name, settings.device, settings.encoder_backend, workspace
        )
        result = evaluate_dense(
            split,
            doc_model,
            workspace,
            request.index,
            request.query_prompt,
            request.corpus_prompt,
            name=f"dense:{model_name}",
            progress=progress,
            query_model=query_model,
        )
    if output is not None:
        payload = result.summary() | {
            "data": request.data,
            "per_query": result.evaluation.per_query,
        }
        write_text_atomic(output, json.dumps(payload, indent=2))
    return result
