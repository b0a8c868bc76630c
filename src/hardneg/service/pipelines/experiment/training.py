"""The experiment's training recipe and its final, test-split scoring.

Each arm and seed trains two stages:

1. the **comparison stage**, static-negative training that reads the arm's negatives file: the
   paper's STAR (shared encoder), or "STAR, frozen documents" (the query tower only, against the
   base model's frozen document embeddings) when the profile freezes documents; the opt-in
   ``gpl`` arm trains MarginMSE on its file's teacher scores instead, with the same steps,
   learning rate, batches, seeds and frozen-document setting;
2. **ADORE**, continuing from the stage-1 model; it retrieves its own negatives every step from a
   frozen document index, so it does not read the arm's negatives at all.

Training sees the ``val`` split only (curves, and the best checkpoint when there are
intermediate evaluations). The ``test`` split is read by :func:`score_on_test` alone, once every
model is trained.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardneg.core.backends import BackendChoice, resolve_backend
from hardneg.core.beir import load_split
from hardneg.core.encoders import pick_device
from hardneg.core.metrics import Evaluation
from hardneg.core.progress import Progress
from hardneg.core.workspace import Workspace
from hardneg.service.pipelines.evaluate import load_models
from hardneg.service.pipelines.experiment.profiles import GPL, Profile
from hardneg.service.pipelines.experiment.stages import Scored, Trained
from hardneg.trainers.config import TrainerKind, TrainingConfig, config_from_mapping
from hardneg.trainers.encoding import resolve_precision
from hardneg.trainers.evaluation import evaluate_bm25, evaluate_dense
from hardneg.trainers.launch import trainer_for

logger = logging.getLogger(__name__)

VAL_SPLIT = "val"
TEST_SPLIT = "test"
PER_QUERY = ("ndcg@10", "recall@100")  # per-query scores kept for the statistics
STAGE_ONE_TRAINERS: dict[str, TrainerKind] = {GPL: "margin-mse"}  # every other arm: STAR


def stage_one_trainer(arm: str) -> TrainerKind:
    """The trainer of ``arm``'s comparison stage."""
    return STAGE_ONE_TRAINERS.get(arm, "star")


@dataclass(frozen=True)
class Recipe:
    """What every training run of one experiment shares."""

    profile: Profile
    model: str  # the base bi-encoder
    data: Path  # the experiment's BEIR folder
    device: str | None
    backend: BackendChoice = "torch"  # runs the frozen document encoder (as mining and scoring)

    @property
    def precision(self) -> str:
        """The profile's training precision as resolved for this machine's device."""
        return resolve_precision(self.profile.precision, pick_device(self.device))

    def numerics(self) -> dict[str, str]:
        """What the profile's ``auto`` choices became on this machine (for the report)."""
        device = pick_device(self.device)
        return {
            "device": device,
            "training_precision": self.precision,
            "encoder_backend": resolve_backend(self.backend, device),
        }

    def config(
        self,
        negatives: str,
        output: Path,
        steps: int,
        learning_rate: float,
        seed: int,
        rows: int,
        **overrides: Any,
    ) -> TrainingConfig:
        profile = self.profile
        has_val = (self.data / "qrels" / f"{VAL_SPLIT}.tsv").is_file()
        values: dict[str, object] = {
            "model": self.model,
            "negatives": negatives,
            "output_dir": str(output),
            "data": str(self.data) if has_val else None,
            "corpus": str(self.data),
            "split": VAL_SPLIT,
            "dev_split": VAL_SPLIT,
            "per_device_batch_size": min(profile.batch_size, max(1, rows)),
            "negatives_per_query": profile.negatives_per_step,
            "max_steps": steps,
            "learning_rate": learning_rate,
            "max_doc_length": profile.max_doc_length,
            "freeze_documents": profile.freeze_documents,
            "eval_before": False,
            "eval_steps": profile.eval_steps,
            "save_steps": profile.save_steps,
            "logging_steps": 4,
            "seed": seed,
            "top_k": profile.adore_top_k,
            "document_backend": self.backend,
            "precision": self.precision,
        }
        if self.device:
            values["device"] = self.device
        return config_from_mapping(values | overrides, "experiment profile")

    def stage_one(self, negatives: str, output: Path, seed: int, rows: int) -> TrainingConfig:
        profile = self.profile
        return self.config(
            negatives, output, profile.star_steps, profile.star_learning_rate, seed, rows
        )

    def adore(
        self, negatives: str, star: Path, output: Path, seed: int, rows: int
    ) -> TrainingConfig:
        profile = self.profile
        # ADORE's frozen documents: the base model's when STAR froze them, else STAR's own
        document_model = self.model if profile.freeze_documents else str(star)
        return self.config(
            negatives,
            output,
            profile.adore_steps,
            profile.adore_learning_rate,
            seed,
            rows,
            model=str(star),
            document_model=document_model,
            freeze_documents=False,
        )


def train(
    kind: TrainerKind, config: TrainingConfig, workspace: Workspace, progress: Progress
) -> Trained:
    info = trainer_for(kind)(config, workspace, progress)
    return Trained(output=str(config.train.output_dir), summary=dict(info))


def _scored(evaluation: Evaluation) -> Scored:
    return Scored(
        metrics={k: round(float(v), 6) for k, v in evaluation.mean.items()},
        num_queries=evaluation.num_queries,
        per_query={
            query: {name: round(values[name], 6) for name in PER_QUERY}
            for query, values in evaluation.per_query.items()
        },
    )


def score_on_test(
    data: Path,
    model: str | None,
    workspace: Workspace,
    device: str | None,
    progress: Progress,
    backend: BackendChoice = "torch",
) -> Scored:
    """Test-split metrics, mean and per query, of a trained folder or model (None: BM25)."""
    split = load_split(data, TEST_SPLIT)
    if model is None:
        return _scored(evaluate_bm25(split, workspace, progress=progress).evaluation)
    query_model, doc_model = load_models(model, device, backend, workspace)
    result = evaluate_dense(
        split, doc_model, workspace, name=model, progress=progress, query_model=query_model
    )
    return _scored(result.evaluation)
