"""Encoder backends: one bi-encoder run by torch, ONNX Runtime or OpenVINO, in fp32 or int8.

``torch`` is the sentence-transformers model as loaded. The others keep that model (tokenizer,
truncation, prompts, pooling, normalisation) and swap only its transformer for an exported graph:

- ``onnx``: the transformer exported to ONNX (fp32), run by ONNX Runtime;
- ``onnx-int8``: that graph with its weights quantized to int8 (dynamic quantization: activations
  are quantized per batch at run time, no calibration data), run by ONNX Runtime;
- ``openvino`` / ``openvino-int8``: the same two ONNX files, compiled and run by OpenVINO;
- ``torch-bf16``: no export, the torch model itself under CPU bfloat16 autocast, for CPUs with
  native bf16 dot products (AVX512-BF16 or AMX): about int8's speed with near-fp32 vectors.

Why not sentence-transformers' own ``backend="onnx"``: it goes through ``optimum-onnx``, whose
releases require transformers < 4.58, and sentence-transformers 6 requires transformers >= 5;
``optimum-intel`` pins transformers < 5.6 and pulls a CUDA torch. ONNX Runtime, ``onnx`` and
OpenVINO themselves have no such pins, so hardneg exports with ``torch.onnx`` and quantizes with
ONNX Runtime's own quantizer.

Each exported graph is written once per model fingerprint under the workspace
(``encoders/<fingerprint>-<artifact>-v<recipe>/model.onnx``), atomically, offline (from the
weights already loaded), and reused by every later load. An exported model gets its own
fingerprint (the weights' fingerprint, the backend and the export recipe), so its corpus
embeddings are stored apart from the fp32 torch ones and the two never mix.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar, cast, get_args

from hardneg.core.atomic import atomic_path

if TYPE_CHECKING:
    import torch
    from sentence_transformers import CrossEncoder, SentenceTransformer
    from sentence_transformers.models import Transformer

    Encoder = SentenceTransformer | CrossEncoder
EncoderT = TypeVar("EncoderT", "SentenceTransformer", "CrossEncoder")

logger = logging.getLogger(__name__)

EncoderBackend = Literal["torch", "torch-bf16", "onnx", "onnx-int8", "openvino", "openvino-int8"]
BACKENDS: tuple[EncoderBackend, ...] = get_args(EncoderBackend)
BackendChoice = EncoderBackend | Literal["auto"]
# ``auto`` on a CPU: int8 was to be the default only if it kept nDCG@10 within 0.005 of fp32.
# bench/performance.py, SciFact test (bench/results/performance.json, "encoder"): nDCG@10
# 0.6442 int8 vs 0.6451 torch fp32 (loss 0.0009), 2.42x the documents per second, the fastest
# of the six backends (2-core EPYC, all six in one run).
CPU_DEFAULT: EncoderBackend = "onnx-int8"
# torch-bf16 is not the default even with native bf16: on this project's EPYC (AVX512-BF16) it
# encoded 2.13x torch fp32's documents/s against onnx-int8's 2.42x (bench/performance.py, one
# run, interleaved), though much closer to fp32 (min cosine 0.99997 vs 0.988).
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # /proc/cpuinfo flags of native bf16 math
EXPORT_RECIPE = 1  # bump when the export or quantization changes: new folders, new fingerprints
_CHOICES: dict[str, BackendChoice] = {name: name for name in BACKENDS} | {"auto": "auto"}
_MODEL_FILE = "model.onnx"
_FINGERPRINT_ATTR = "_hardneg_fingerprint"
_BACKEND_ATTR = "_hardneg_backend"
_SOURCE_ATTR = "_hardneg_source_fingerprint"


def check_backend(value: str, field: str = "backend") -> BackendChoice:
    """``value`` if it names a backend (or ``auto``), else a ValueError naming ``field``."""
    if value in _CHOICES:
        return _CHOICES[value]
    choices = ", ".join(_CHOICES)
    raise ValueError(f"{field}: unknown encoder backend {value!r}; choose one of {choices}")


def resolve_backend(choice: str, device: str) -> EncoderBackend:
    """The backend to run on ``device``: ``auto`` is torch on a GPU and ``CPU_DEFAULT`` on a CPU
    (torch where ONNX Runtime is not installed). Every backend but torch runs on the CPU only."""
    backend = check_backend(choice)
    on_cpu = device.split(":")[0] == "cpu"
    if backend == "auto":
        if not on_cpu or not _onnxruntime_installed():
            return "torch"
        return CPU_DEFAULT
    if backend != "torch" and not on_cpu:
        raise ValueError(f"backend: {backend!r} runs on the CPU, but the device is {device!r}")
    return backend


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 dot products natively (Linux: its /proc/cpuinfo flags;
    elsewhere False, and bf16 is never chosen by ``auto``)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool(BF16_FLAGS & set(line.partition(":")[2].split()))
    return False


def _onnxruntime_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def is_int8(backend: EncoderBackend) -> bool:
    return backend.endswith("-int8")


def exported_fingerprint(source_fingerprint: str, backend: EncoderBackend) -> str:
    """The fingerprint of ``backend``'s copy of a model whose weights hash to ``source``."""
    if backend == "torch":
        return source_fingerprint
    text = f"{source_fingerprint}|{backend}|recipe {EXPORT_RECIPE}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def recorded_fingerprint(model: torch.nn.Module) -> str | None:
    """The fingerprint an exported model was given when loaded (None for a torch model)."""
    value = getattr(model, _FINGERPRINT_ATTR, None)
    return value if isinstance(value, str) else None


def source_fingerprint(model: torch.nn.Module) -> str | None:
    """The torch weights' fingerprint an exported model was made from (None for a torch model)."""
    value = getattr(model, _SOURCE_ATTR, None)
    return value if isinstance(value, str) else None


def model_backend(model: torch.nn.Module) -> EncoderBackend:
    """Which backend runs ``model`` (``torch`` unless :func:`to_backend` converted it)."""
    value = str(getattr(model, _BACKEND_ATTR, "torch"))
    return next((name for name in BACKENDS if name == value), "torch")


def export_folder(exports: Path, source_fingerprint: str, backend: EncoderBackend) -> Path:
    """Where ``backend``'s graph of the model lives: ONNX and OpenVINO share the ONNX files."""
    artifact = "onnx-int8" if is_int8(backend) else "onnx"
    return exports / f"{source_fingerprint[:16]}-{artifact}-v{EXPORT_RECIPE}"


_OUTPUTS = ("last_hidden_state", "logits")  # bi-encoders' token embeddings, cross-encoders' scores


def _transformer(model: Encoder) -> tuple[Transformer, str]:
    """The model's first module, checked to be a text transformer we know how to export, and
    the name of the output sentence-transformers reads from it."""
    from sentence_transformers.models import Transformer as TransformerModule

    first = model[0]
    config = getattr(first, "modality_config", {"text": {}})
    text = config.get("text", {}) if isinstance(config, dict) else {}
    output = text.get("method_output_name") or "last_hidden_state"
    if not isinstance(first, TransformerModule) or set(config) != {"text"}:
        raise ValueError("backend: only text models whose first module is a Transformer export")
    if text.get("method", "forward") != "forward" or output not in _OUTPUTS:
        raise ValueError(f"backend: the transformer must return one of {_OUTPUTS} to export")
    return first, output


def _export_fp32(model: Encoder, folder: Path) -> None:
    """Trace the transformer of ``model`` (on the CPU, eval mode) into ``folder/model.onnx``."""
    import torch

    from hardneg.core.runtimes import TracedTransformer

    transformer, output = _transformer(model)
    names = list(model.tokenizer.model_input_names)
    sample = model.tokenizer(
        ["hardneg export", "a second, longer sentence so the sequence axis is dynamic"],
        padding=True,
        return_tensors="pt",
    )
    inner = cast("torch.nn.Module", transformer.model)
    traced = TracedTransformer(inner, names, output).eval()
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes[output] = {0: "batch", 1: "sequence"} if output == "last_hidden_state" else {0: "batch"}
    with atomic_path(folder) as temp, torch.no_grad(), warnings.catch_warnings():
        temp.mkdir()
        # the tracer warns about Python branches on shapes; those in the attention mask code are
        # constant for any padded batch (the graph matches torch on SciFact, see the bench)
        warnings.simplefilter("ignore")
        torch.onnx.export(
            traced,
            tuple(sample[name] for name in names),
            str(temp / _MODEL_FILE),
            input_names=names,
            output_names=[output],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def _export_int8(fp32_folder: Path, folder: Path) -> None:
    """Quantize the fp32 graph's weights to int8, per output channel.

    ``reduce_range`` (7-bit weights) keeps the u8 x s8 products of AVX2 and AVX-512 without VNNI
    from saturating their 16-bit sums; activations are quantized per batch at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with atomic_path(folder) as temp:
        temp.mkdir()
        quantize_dynamic(
            fp32_folder / _MODEL_FILE,
            temp / _MODEL_FILE,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
        )


def exported_graph(model: Encoder, source: str, exports: Path, backend: EncoderBackend) -> Path:
    """The ONNX file of ``backend`` for ``model``, whose weights' fingerprint is ``source``:
    exported on first use, then reused."""
    folder = export_folder(exports, source, backend)
    if not (folder / _MODEL_FILE).is_file():
        fp32 = export_folder(exports, source, "onnx")
        if not (fp32 / _MODEL_FILE).is_file():
            logger.info("exporting the encoder to ONNX at %s", fp32)
            _export_fp32(model, fp32)
        if is_int8(backend):
            logger.info("quantizing the encoder to int8 at %s", folder)
            _export_int8(fp32, folder)
    return folder / _MODEL_FILE


def to_backend(
    model: EncoderT, source: str, backend: EncoderBackend, exports: Path | None
) -> EncoderT:
    """``model`` with its transformer run by ``backend`` (in place; ``torch``: unchanged).

    ``model`` is a torch model on the CPU whose weights' fingerprint is ``source``; the exported
    model's own fingerprint (weights, backend, recipe) is recorded on it for
    :func:`hardneg.core.encoders.model_fingerprint`."""
    if backend == "torch":
        return model
    from hardneg.core.runtimes import Bf16Transformer, OnnxRuntimeTransformer, OpenVinoTransformer

    if recorded_fingerprint(model) is not None:
        raise ValueError("backend: the model is already exported; load it again with torch")
    transformer, output = _transformer(model)
    if backend == "torch-bf16":
        transformer.model = Bf16Transformer(cast("torch.nn.Module", transformer.model), output)
    elif exports is None:
        raise ValueError(f"backend: {backend!r} needs a folder for its exported graph (exports)")
    else:
        graph = exported_graph(model, source, exports, backend)
        runtime = OpenVinoTransformer if backend.startswith("openvino") else OnnxRuntimeTransformer
        config = cast("torch.nn.Module", transformer.model).config
        transformer.model = runtime(graph, config, output)
    setattr(model, _FINGERPRINT_ATTR, exported_fingerprint(source, backend))
    setattr(model, _BACKEND_ATTR, backend)
    setattr(model, _SOURCE_ATTR, source)
    return model
