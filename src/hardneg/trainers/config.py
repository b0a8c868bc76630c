"""Training arguments as small frozen sections (Tevatron style) of one spec, from flags or a file.

A config (a file, ``--set``, or a train job's ``config``) is flat (``{"learning_rate": 2e-5}``:
every field name is unique across the sections) or grouped by section
(``{"train": {"learning_rate": 2e-5}}``). Unknown keys and wrong values raise
:class:`~hardneg.core.beir.DataError` naming the source and the field (pydantic's checks).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, Field, model_validator

from hardneg.core.backends import BackendChoice
from hardneg.core.index_params import IndexKind
from hardneg.core.spec import Section, Spec, build_spec, read_spec_file, server_owned

TrainerKind = Literal["star", "adore", "baseline", "reranker", "margin-mse"]
TRAINER_KINDS: tuple[TrainerKind, ...] = get_args(TrainerKind)
UserPath = Annotated[Path, AfterValidator(Path.expanduser)]
Optimizer = Literal["adamw", "lamb"]
Precision = Literal["fp32", "fp16", "bf16"]


class ModelArguments(Section):
    model: str | None = Field(
        None, json_schema_extra=server_owned('the job\'s "model"')
    )  # base model id or path; None: the packaged all-MiniLM-L6-v2
    max_query_length: int = Field(64, ge=4)
    max_doc_length: int = Field(
        256, ge=4
    )  # documents are cut here while training (and reranker pairs)
    query_prompt: str = ""
    doc_prompt: str = ""
    gradient_checkpointing: bool = False
    dropout: bool = True  # False: train in eval mode (bit-identical across world sizes)
    # STAR/baseline: train the query tower only, scoring documents with frozen embeddings from
    # adore.document_model (default: the model itself); the corpus is then encoded only once
    freeze_documents: bool = False


class DataArguments(Section):
    negatives: UserPath | None = Field(
        None, json_schema_extra=server_owned("the mine job named by negatives_job")
    )  # mined-negatives JSONL (hardneg.core.negatives)
    corpus: UserPath | None = Field(
        None, json_schema_extra=server_owned("the job's corpus")
    )  # BEIR folder whose corpus ADORE indexes (default: eval data)
    negatives_per_query: int = Field(1, ge=0)  # hard negatives sampled per query and step
    negative_depth: int = Field(0, ge=0)  # sample only among the first N mined negatives (0: all)


class TrainingArguments(Section):
    output_dir: UserPath = Field(
        Path("hardneg-model"), json_schema_extra=server_owned("the job's folder")
    )
    seed: int = 42
    per_device_batch_size: int = Field(16, ge=1)  # queries per process and micro-batch
    gradient_accumulation_steps: int = Field(1, ge=1)
    num_epochs: float = 1.0
    max_steps: int = Field(0, ge=0)  # optimizer steps; > 0 overrides num_epochs
    learning_rate: float = Field(2e-5, gt=0)
    weight_decay: float = 0.01
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    max_grad_norm: float = 1.0
    optimizer: Optimizer = "adamw"
    precision: Precision = "fp32"  # autocast: fp16 or bf16 on CUDA, bf16 on a CPU
    scale: float = Field(
        20.0, gt=0
    )  # similarity scale (inverse temperature) applied to cosine scores
    save_steps: int = 50  # checkpoint every N optimizer steps (and always at the end)
    save_total_limit: int = Field(1, ge=1)
    logging_steps: int = 10
    device: str | None = Field(None, json_schema_extra=server_owned("HARDNEG_DEVICE"))
    resume: bool = Field(
        True, json_schema_extra=server_owned("always on: a retried attempt resumes")
    )  # continue from the newest checkpoint in output_dir
    keep_checkpoints: bool = False  # False: delete checkpoints once the final model is saved


class EvalArguments(Section):
    data: UserPath | None = Field(
        None, json_schema_extra=server_owned("the job's corpus")
    )  # BEIR folder; None: no evaluation
    split: str = Field(
        "test", json_schema_extra=server_owned("the job's eval_split")
    )  # reported before and after training
    dev_split: str | None = "dev"  # intermediate evals and best checkpoint, when it exists
    eval_before: bool = True
    eval_after: bool = True
    eval_steps: int = Field(0, ge=0)  # intermediate evaluation every N optimizer steps (0: none)
    eval_corpus_size: int = 0  # intermediate evals on judged docs + random others (0: all)
    early_stopping_patience: int = Field(0, ge=0)
    # stop after this many dev evaluations in a row without a better selection metric (0: never)
    loss_groups: UserPath | None = Field(
        None, json_schema_extra=server_owned("mined by the experiment for its val queries")
    )  # reranker: mined negatives of dev queries; their listwise loss is the dev metric
    index: IndexKind = "flat"


class AdoreArguments(Section):
    document_model: str | None = Field(
        None, json_schema_extra=server_owned('the job\'s "document_model"')
    )  # frozen document encoder; None: the model itself
    # how the frozen document encoder runs (hardneg.core.backends): its corpus embeddings, and so
    # the training, are those of this backend; the output folder records it for evaluation
    document_backend: BackendChoice = "torch"
    top_k: int = Field(200, ge=2)  # dynamic negatives retrieved per query and step
    metric_cut: int | None = 200  # 1/rank weights are zero beyond this rank
    bundle_document_encoder: bool = False  # copy the frozen encoder into the output folder


class RerankerArguments(Section):
    rerank_depth: int = 100  # evaluation reranks this many BM25 hits per query


class TrainingConfig(Spec):
    model: ModelArguments = Field(default_factory=ModelArguments)
    data: DataArguments = Field(default_factory=DataArguments)
    train: TrainingArguments = Field(default_factory=TrainingArguments)
    eval: EvalArguments = Field(default_factory=EvalArguments)
    adore: AdoreArguments = Field(default_factory=AdoreArguments)
    reranker: RerankerArguments = Field(default_factory=RerankerArguments)

    @model_validator(mode="after")
    def _has_a_length(self) -> TrainingConfig:
        if self.train.num_epochs <= 0 and self.train.max_steps <= 0:
            raise ValueError("num_epochs or max_steps must be positive")
        return self

    def to_dict(self) -> dict[str, dict[str, Any]]:
        dumped: dict[str, dict[str, Any]] = self.model_dump(mode="json")
        return dumped

    def replace(self, **overrides: Any) -> TrainingConfig:
        """A copy with flat ``field=value`` overrides (same names as in a flat config file)."""
        return config_from_mapping(overrides, "overrides", base=self)


def config_from_mapping(
    mapping: Mapping[str, object], source: str = "config", base: TrainingConfig | None = None
) -> TrainingConfig:
    """Build a config from a flat or sectioned mapping; ``base`` supplies the other values."""
    layers = [base.model_dump() if base is not None else {}, mapping]
    return build_spec(TrainingConfig, layers, source)


def load_config(path: Path, overrides: Mapping[str, object] | None = None) -> TrainingConfig:
    """Config from a file, then flat ``overrides`` (e.g. command-line flags) on top."""
    return build_spec(TrainingConfig, [read_spec_file(path), overrides or {}], str(path))
