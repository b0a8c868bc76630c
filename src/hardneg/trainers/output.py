"""The trained model folder: weights in sentence-transformers layout, a model card holding the
metrics and the training config, and, for ADORE, the reference to the frozen document encoder.

The folder is loadable with ``SentenceTransformer(path)`` (or ``CrossEncoder(path)`` for a
reranker). ``hardneg_training.json`` is written last and marks a finished run.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hardneg.core.atomic import write_text_atomic
from hardneg.core.backends import check_backend, model_backend, source_fingerprint
from hardneg.core.encoders import load_encoder, model_fingerprint, run_by
from hardneg.core.metrics import METRIC_NAMES
from hardneg.core.workspace import Workspace
from hardneg.trainers.config import TrainingConfig
from hardneg.trainers.loop import TrainResult

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

TRAINING_FILE = "hardneg_training.json"
DUAL_FILE = "hardneg_dual_encoder.json"
BUNDLED_DOC_ENCODER = "document_encoder"

_PAPERS = {
    "star": "STAR (Zhan et al., SIGIR 2021): static hard negatives + random in-batch negatives",
    "adore": "ADORE (Zhan et al., SIGIR 2021): query encoder trained on dynamically retrieved "
    "negatives against a frozen document index",
    "baseline": "sentence-transformers MultipleNegativesRankingLoss with mined hard negatives",
    "reranker": "cross-encoder trained with localized contrastive estimation (Gao et al., 2021)",
}


def summary(kind: str, config: TrainingConfig, result: TrainResult) -> dict[str, Any]:
    return {
        "finished": True,
        "trainer": kind,
        "steps": result.steps,
        "metrics_before": result.before,
        "metrics_after": result.after,
        "eval_split": config.eval.split if config.eval.data else None,
        "best_step": result.best_step,
        "resumed_from": result.resumed_from,
        "seconds": result.seconds,
        "config": config.to_dict(),
    }


def _metrics_table(before: dict[str, float] | None, after: dict[str, float] | None) -> str:
    if not before and not after:
        return "No evaluation was configured.\n"
    rows = ["| metric | before | after |", "| --- | ---: | ---: |"]
    for name in METRIC_NAMES:
        b = f"{before[name]:.4f}" if before and name in before else "-"
        a = f"{after[name]:.4f}" if after and name in after else "-"
        rows.append(f"| {name} | {b} | {a} |")
    return "\n".join(rows) + "\n"


def model_card(kind: str, info: dict[str, Any], extra: str = "") -> str:
    config = info["config"]
    base = config["model"]["model"] or "sentence-transformers/all-MiniLM-L6-v2"
    is_reranker = kind == "reranker"
    loader = "CrossEncoder" if is_reranker else "SentenceTransformer"
    pipeline = "text-ranking" if is_reranker else "sentence-similarity"
    data = config["eval"]["data"] or "(none)"
    return f"""---
library_name: sentence-transformers
pipeline_tag: {pipeline}
base_model: {base}
tags:
- sentence-transformers
- hardneg
- {kind}
---

# {kind} model trained with hardneg

{_PAPERS.get(kind, kind)}. Base model: `{base}`; {info["steps"]} optimizer steps.

## Evaluation

BEIR data `{data}`, split `{info["eval_split"]}`, full corpus, before and after training:

{_metrics_table(info["metrics_before"], info["metrics_after"])}
Every evaluation (before, at eval steps, after) is in `metrics.jsonl`.
{extra}
## Usage

```python
from sentence_transformers import {loader}
model = {loader}("path/to/this/folder")
```

## Training configuration

```json
{json.dumps(config, indent=2)}
```
"""


def write_model_folder(
    output_dir: Path,
    save: Callable[[Path], None],
    kind: str,
    config: TrainingConfig,
    result: TrainResult,
    extra_files: dict[str, str] | None = None,
    card_extra: str = "",
) -> dict[str, Any]:
    """Save the model via ``save(folder)`` into ``output_dir`` with its card and summary."""
    output_dir.mkdir(parents=True, exist_ok=True)
    info = summary(kind, config, result)
    with tempfile.TemporaryDirectory(prefix=".final-", dir=output_dir) as name:
        staging = Path(name)
        save(staging)
        (staging / "README.md").write_text(model_card(kind, info, card_extra), encoding="utf-8")
        for file_name, text in (extra_files or {}).items():
            (staging / file_name).write_text(text, encoding="utf-8")
        finished = output_dir / TRAINING_FILE
        if finished.exists():
            finished.unlink()
        for entry in sorted(staging.iterdir()):
            target = output_dir / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            entry.replace(target)
    write_text_atomic(output_dir / TRAINING_FILE, json.dumps(info, indent=2))
    return info


def finished_summary(output_dir: Path) -> dict[str, Any] | None:
    """The summary of a finished run in ``output_dir``, or None."""
    path = output_dir / TRAINING_FILE
    if not path.is_file():
        return None
    info: dict[str, Any] = json.loads(path.read_text())
    return info if info.get("finished") else None


def dual_reference(doc_model: SentenceTransformer, reference: str) -> str:
    """JSON naming the frozen document encoder, its torch weights' fingerprint and the backend
    that ran it (an exported one is applied again when the pair is loaded)."""
    backend = model_backend(doc_model)
    weights = source_fingerprint(doc_model) if backend != "torch" else None
    info = {
        "document_model": reference,
        "fingerprint": weights or model_fingerprint(doc_model),
        "document_backend": backend,
    }
    return json.dumps(info, indent=2)


def resolve_reference(folder: Path, reference: str) -> str:
    """A relative reference is relative to the query-encoder folder (a bundled encoder)."""
    candidate = folder / reference
    return str(candidate) if not Path(reference).is_absolute() and candidate.exists() else reference


def load_dual_encoder(
    path: Path, device: str | None = None, exports: Path | None = None
) -> tuple[SentenceTransformer, SentenceTransformer]:
    """(query encoder, document encoder) of a trained folder.

    For an ADORE folder the document encoder is the frozen one it references, checked against the
    recorded weights fingerprint and run by the backend it was trained with (its exported graph
    kept in ``exports``, default: the default workspace's); for any other folder both sides are
    the same model.
    """
    query_model = load_encoder(str(path), device)
    dual = path / DUAL_FILE
    if not dual.is_file():
        return query_model, query_model
    info = json.loads(dual.read_text())
    doc_model = load_encoder(resolve_reference(path, info["document_model"]), device)
    expected = info.get("fingerprint")
    is_fp32 = next(doc_model.parameters()).dtype.is_floating_point and (
        next(doc_model.parameters()).element_size() == 4
    )
    if expected and is_fp32 and model_fingerprint(doc_model) != expected:
        raise ValueError(
            f"{path}: the document encoder {info['document_model']!r} is not the one this query "
            "encoder was trained against (weights fingerprint differs)"
        )
    backend = check_backend(str(info.get("document_backend", "torch")), "document_backend")
    if backend != "torch":
        on = str(doc_model.device)
        if not on.startswith("cpu"):  # exported graphs run on the CPU only
            logger.warning("%s: documents were encoded by %s; on %s torch runs", path, backend, on)
        else:
            run_by(doc_model, backend, on, exports or Workspace().encoder_exports)
    return query_model, doc_model
