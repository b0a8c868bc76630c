"""The frozen document side shared by ADORE and query-tower STAR.

Both train only the query encoder against documents embedded once by a fixed encoder: ADORE
retrieves its negatives from a FAISS index of those embeddings; STAR with ``freeze_documents``
scores its static negatives and in-batch positives against them. Corpus documents come from the
workspace's cached corpus embeddings; texts that are not corpus documents (LLM-written negatives)
are encoded once, up front, by the same frozen encoder.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from hardneg.core.backends import model_backend
from hardneg.core.beir import Corpus, DataError, find_corpus_file, load_corpus
from hardneg.core.dense import DenseIndex, DenseIndexConfig
from hardneg.core.embeddings import EmbeddingKey
from hardneg.core.encoders import encode_texts, load_encoder, run_by
from hardneg.core.progress import Progress
from hardneg.core.workspace import Workspace
from hardneg.trainers.common import load_trainable_encoder, model_reference
from hardneg.trainers.config import TrainingConfig
from hardneg.trainers.data import PAD_ID, TrainExample
from hardneg.trainers.distributed import DistContext, barrier
from hardneg.trainers.evaluation import DenseEvaluator
from hardneg.trainers.loop import TrainResult
from hardneg.trainers.output import (
    BUNDLED_DOC_ENCODER,
    DUAL_FILE,
    dual_reference,
    write_model_folder,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)


def training_evaluator(
    config: TrainingConfig,
    workspace: Workspace,
    doc_model: SentenceTransformer,
    query_model: SentenceTransformer | None,
    corpus: Corpus | None,
    progress: Progress,
) -> DenseEvaluator | None:
    """The evaluator of a bi-encoder run on ``config.eval.data`` (None without one); ``corpus``,
    the frozen side's already loaded corpus, is reused when the evaluation folder is the same."""
    if config.eval.data is None:
        return None
    same = corpus is not None and config.eval.data == corpus_folder(config)
    return DenseEvaluator(
        config.eval.data,
        workspace,
        doc_model,
        query_model,
        index_config=DenseIndexConfig(kind=config.eval.index),
        query_prompt=config.model.query_prompt,
        corpus_prompt=config.model.doc_prompt,
        corpus=corpus if same else None,
        progress=progress,
        seed=config.train.seed,
    )


def corpus_folder(config: TrainingConfig) -> Path:
    folder = config.data.corpus or config.eval.data
    if folder is None:
        raise DataError(
            "config", None, "a frozen document side needs 'corpus' (or eval 'data'): a BEIR folder"
        )
    return folder


def document_model_name(config: TrainingConfig) -> str | None:
    return config.adore.document_model or config.model.model


def frozen_document_side(
    config: TrainingConfig, workspace: Workspace, ctx: DistContext, progress: Progress
) -> tuple[SentenceTransformer, Corpus, npt.NDArray[np.float32], DenseIndex]:
    """The frozen document encoder, its corpus embeddings (cached) and their FAISS index.

    The encoder runs by ``adore.document_backend`` (torch, or an exported ONNX/OpenVINO graph,
    int8 included): the embeddings every step scores against are that backend's."""
    corpus = load_corpus(find_corpus_file(corpus_folder(config)))
    plain = config.replace(gradient_checkpointing=False)
    doc_model = load_trainable_encoder(document_model_name(config), plain, ctx.device)
    doc_model.eval()
    doc_model.requires_grad_(False)
    if not ctx.is_main:
        barrier(ctx)  # rank 0 exports and encodes the corpus once; the others then read it
    run_by(doc_model, config.adore.document_backend, str(ctx.device), workspace.encoder_exports)
    vectors = workspace.embeddings.encode_corpus(
        doc_model, corpus, config.model.doc_prompt, progress=progress
    )
    if ctx.is_main:
        barrier(ctx)
    index_config = DenseIndexConfig(kind=config.eval.index)
    stem = EmbeddingKey.for_model(corpus, doc_model, config.model.doc_prompt).stem
    index = workspace.dense_index(vectors, corpus.ids, stem, index_config)
    return doc_model, corpus, vectors, index


class FrozenDocuments:
    """Frozen embeddings of every document a run can meet, looked up by id.

    ``vectors`` (N, dim) are the corpus rows; ``extra`` maps ids that are not corpus documents
    (generated negatives) to their own (dim,) embeddings.
    """

    def __init__(
        self,
        corpus: Corpus,
        vectors: npt.NDArray[np.float32],
        extra: dict[str, npt.NDArray[np.float32]],
    ) -> None:
        self.corpus, self.vectors, self.extra = corpus, vectors, extra

    @classmethod
    def for_examples(
        cls,
        examples: Sequence[TrainExample],
        corpus: Corpus,
        vectors: npt.NDArray[np.float32],
        doc_model: SentenceTransformer,
        prompt: str = "",
    ) -> FrozenDocuments:
        """Encode (once) the examples' documents that the corpus does not hold."""
        outside: dict[str, str] = {}
        for doc_id, text in _documents(examples):
            if doc_id != PAD_ID and doc_id not in corpus and doc_id not in outside:
                outside[doc_id] = text
        extra: dict[str, npt.NDArray[np.float32]] = {}
        if outside:
            logger.info("encoding %d training documents outside the corpus", len(outside))
            encoded = encode_texts(doc_model, list(outside.values()), prompt=prompt or None)
            extra = dict(zip(outside, encoded, strict=True))
        return cls(corpus, vectors, extra)

    def lookup(self, doc_ids: Sequence[str], device: str | torch.device) -> torch.Tensor:
        """(n, dim) frozen embeddings of ``doc_ids``; padding slots get zeros (masked anyway)."""
        dim = self.vectors.shape[1]
        rows = np.zeros((len(doc_ids), dim), dtype=np.float32)  # (n, dim)
        for i, doc_id in enumerate(doc_ids):
            if doc_id == PAD_ID:
                continue
            if doc_id in self.extra:
                rows[i] = self.extra[doc_id]
            else:
                rows[i] = self.vectors[self.corpus.position(doc_id)]
        return torch.from_numpy(rows).to(device)


def _documents(examples: Iterable[TrainExample]) -> Iterable[tuple[str, str]]:
    for example in examples:
        yield from zip(example.positive_ids, example.positives, strict=True)
        yield from zip(example.negative_ids, example.negatives, strict=True)


def write_query_encoder_folder(
    kind: str,
    config: TrainingConfig,
    result: TrainResult,
    query_model: SentenceTransformer,
    doc_model: SentenceTransformer,
) -> dict[str, Any]:
    """Save a query encoder that names (or bundles) the frozen document encoder it pairs with."""
    bundle = config.adore.bundle_document_encoder
    reference = BUNDLED_DOC_ENCODER if bundle else model_reference(document_model_name(config))

    def save(folder: Path) -> None:
        query_model.save(str(folder))
        if bundle:  # the torch weights; the recorded backend is applied again when loaded
            weights = doc_model
            if model_backend(doc_model) != "torch":
                weights = load_encoder(document_model_name(config), "cpu")
            weights.save(str(folder / BUNDLED_DOC_ENCODER))

    card = (
        f"\nThis folder is the **query encoder**. Documents must be encoded with the frozen "
        f"document encoder `{reference}` (see `{DUAL_FILE}`); "
        "`hardneg.trainers.output.load_dual_encoder(path)` returns both.\n"
    )
    return write_model_folder(
        config.train.output_dir,
        save,
        kind,
        config,
        result,
        extra_files={DUAL_FILE: dual_reference(doc_model, reference)},
        card_extra=card,
    )
