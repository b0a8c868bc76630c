"""Training arguments as small frozen dataclasses (Tevatron style), read from flags or one file.

A config file (JSON or YAML) is either flat (``{"learning_rate": 2e-5, ...}``, every field name is
unique across the groups) or grouped by section (``{"train": {"learning_rate": 2e-5}}``). Unknown
keys and wrong types raise :class:`~hardneg.core.beir.DataError` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from hardneg.core.beir import DataError
from hardneg.core.dense import IndexKind

TrainerKind = Literal["star", "adore", "baseline", "reranker", "margin-mse"]
Optimizer = Literal["adamw", "lamb"]
Precision = Literal["fp32", "fp16", "bf16"]


@dataclass(frozen=True)
class ModelArguments:
    model: str | None = None  # base model id or path; None: the packaged all-MiniLM-L6-v2
    max_query_length: int = 64
    max_doc_length: int = 256  # documents are cut here while training (and reranker pairs)
    query_prompt: str = ""
    doc_prompt: str = ""
    gradient_checkpointing: bool = False
    dropout: bool = True  # False: train in eval mode (bit-identical across world sizes)
    # STAR/baseline: train the query tower only, scoring documents with frozen embeddings from
    # adore.document_model (default: the model itself); the corpus is then encoded only once
    freeze_documents: bool = False


@dataclass(frozen=True)
class DataArguments:
    negatives: Path | None = None  # mined-negatives JSONL (hardneg.core.negatives)
    corpus: Path | None = None  # BEIR folder whose corpus ADORE indexes (default: eval data)
    negatives_per_query: int = 1  # hard negatives sampled per query and step
    negative_depth: int = 0  # sample only among the first N mined negatives (0: all)


@dataclass(frozen=True)
class TrainingArguments:
    output_dir: Path = Path("hardneg-model")
    seed: int = 42
    per_device_batch_size: int = 16  # queries per process and micro-batch
    gradient_accumulation_steps: int = 1
    num_epochs: float = 1.0
    max_steps: int = 0  # optimizer steps; > 0 overrides num_epochs
    learning_rate: float = 2e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    optimizer: Optimizer = "adamw"
    precision: Precision = "fp32"  # fp16/bf16 autocast on CUDA only
    scale: float = 20.0  # similarity scale (inverse temperature) applied to cosine scores
    save_steps: int = 50  # checkpoint every N optimizer steps (and always at the end)
    save_total_limit: int = 1
    logging_steps: int = 10
    device: str | None = None
    resume: bool = True  # continue from the newest checkpoint in output_dir
    keep_checkpoints: bool = False  # False: delete checkpoints once the final model is saved


@dataclass(frozen=True)
class EvalArguments:
    data: Path | None = None  # BEIR folder; None: no evaluation
    split: str = "test"  # reported before and after training
    dev_split: str | None = "dev"  # intermediate evals and best checkpoint, when it exists
    eval_before: bool = True
    eval_after: bool = True
    eval_steps: int = 0  # intermediate evaluation every N optimizer steps (0: none)
    eval_corpus_size: int = 0  # intermediate evals on judged docs + random others (0: all)
    index: IndexKind = "flat"


@dataclass(frozen=True)
class AdoreArguments:
    document_model: str | None = None  # frozen document encoder; None: the model itself
    top_k: int = 200  # dynamic negatives retrieved per query and step
    metric_cut: int | None = 200  # 1/rank weights are zero beyond this rank
    bundle_document_encoder: bool = False  # copy the frozen encoder into the output folder


@dataclass(frozen=True)
class RerankerArguments:
    rerank_depth: int = 100  # evaluation reranks this many BM25 hits per query


@dataclass(frozen=True)
class TrainingConfig:
    model: ModelArguments = field(default_factory=ModelArguments)
    data: DataArguments = field(default_factory=DataArguments)
    train: TrainingArguments = field(default_factory=TrainingArguments)
    eval: EvalArguments = field(default_factory=EvalArguments)
    adore: AdoreArguments = field(default_factory=AdoreArguments)
    reranker: RerankerArguments = field(default_factory=RerankerArguments)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {
            section.name: {
                f.name: _plain(getattr(getattr(self, section.name), f.name))
                for f in fields(getattr(self, section.name))
            }
            for section in fields(self)
        }

    def replace(self, **overrides: Any) -> TrainingConfig:
        """A copy with flat ``field=value`` overrides (same names as in a flat config file)."""
        return config_from_mapping(overrides, "overrides", base=self)


def _plain(value: object) -> object:
    return str(value) if isinstance(value, Path) else value


_HINTS = typing.get_type_hints(TrainingConfig)
SECTIONS: dict[str, type] = {f.name: _HINTS[f.name] for f in fields(TrainingConfig)}
_FIELD_SECTION: dict[str, str] = {
    f.name: section for section, cls in SECTIONS.items() for f in fields(cls)
}


def _coerce(value: object, hint: Any, where: str) -> object:
    """Check ``value`` against a field's type hint, converting str -> Path and int -> float."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ValueError(f"{where}: {value!r} is not one of {list(allowed)}")
        return value
    if hint is Path:
        if not isinstance(value, str | Path):
            raise ValueError(f"{where}: expected a path, got {value!r}")
        return Path(value).expanduser()
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    raise ValueError(f"{where}: unsupported type {hint!r}")


def _flatten(mapping: Mapping[str, object], source: str) -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in mapping.items():
        if key in SECTIONS and isinstance(value, Mapping):
            for inner, inner_value in value.items():
                if _FIELD_SECTION.get(inner) != key:
                    raise DataError(source, None, f"unknown key {key}.{inner}")
                flat[inner] = inner_value
        elif key in _FIELD_SECTION:
            flat[key] = value
        else:
            raise DataError(source, None, f"unknown key {key!r}")
    return flat


def config_from_mapping(
    mapping: Mapping[str, object], source: str = "config", base: TrainingConfig | None = None
) -> TrainingConfig:
    """Build a config from a flat or sectioned mapping; ``base`` supplies the other values."""
    base = base or TrainingConfig()
    updates: dict[str, dict[str, object]] = {name: {} for name in SECTIONS}
    for key, value in _flatten(mapping, source).items():
        section = _FIELD_SECTION[key]
        hint = typing.get_type_hints(SECTIONS[section])[key]
        try:
            updates[section][key] = _coerce(value, hint, key)
        except ValueError as exc:
            raise DataError(source, None, str(exc)) from None
    sections = {
        name: dataclasses.replace(getattr(base, name), **values) for name, values in updates.items()
    }
    config = TrainingConfig(**sections)
    validate(config, source)
    return config


def validate(config: TrainingConfig, source: str = "config") -> None:
    """Reject values no run could use, naming the field."""
    checks = {
        "per_device_batch_size": config.train.per_device_batch_size >= 1,
        "gradient_accumulation_steps": config.train.gradient_accumulation_steps >= 1,
        "learning_rate": config.train.learning_rate > 0,
        "num_epochs": config.train.num_epochs > 0 or config.train.max_steps > 0,
        "max_steps": config.train.max_steps >= 0,
        "warmup_ratio": 0 <= config.train.warmup_ratio < 1,
        "save_total_limit": config.train.save_total_limit >= 1,
        "negatives_per_query": config.data.negatives_per_query >= 0,
        "negative_depth": config.data.negative_depth >= 0,
        "top_k": config.adore.top_k >= 2,
        "max_query_length": config.model.max_query_length >= 4,
        "max_doc_length": config.model.max_doc_length >= 4,
        "eval_steps": config.eval.eval_steps >= 0,
        "scale": config.train.scale > 0,
    }
    for name, ok in checks.items():
        if not ok:
            raise DataError(source, None, f"invalid value for {name!r}")


def read_config_file(path: Path) -> dict[str, object]:
    """Parse a JSON or YAML config file into a mapping (YAML needs PyYAML)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise DataError(path, None, "YAML configs need PyYAML (pip install pyyaml)") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            raise DataError(path, None if line is None else line + 1, "malformed YAML") from None
    else:
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(path, exc.lineno, f"malformed JSON ({exc.msg})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise DataError(path, None, "expected a mapping of option names to values")
    return loaded


def load_config(path: Path, overrides: Mapping[str, object] | None = None) -> TrainingConfig:
    """Config from a file, then flat ``overrides`` (e.g. command-line flags) on top."""
    config = config_from_mapping(read_config_file(path), str(path))
    return config_from_mapping(overrides, "command line", base=config) if overrides else config
