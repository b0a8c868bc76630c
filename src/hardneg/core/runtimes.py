"""Torch modules that stand in for a sentence-transformers transformer (see core.backends).

``TracedTransformer`` is what ``torch.onnx.export`` traces: the Hugging Face model called with
the tokenizer's inputs, by name, returning the token embeddings. The two runtimes take those
same inputs and return ``{output: tensor}`` (``last_hidden_state`` for a bi-encoder, ``logits``
for a cross-encoder), as the Hugging Face model does, so the rest of the sentence-transformers
model (pooling, normalisation, ``encode``, ``predict``) runs unchanged.
They hold no parameters: the weights live in the exported graph (``Bf16Transformer``, which runs
the torch model itself, is the exception).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch


class TracedTransformer(torch.nn.Module):
    """The Hugging Face model with positional inputs, named as the tokenizer names them."""

    def __init__(self, model: torch.nn.Module, input_names: list[str], output: str) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names
        self.output = output

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        named = dict(zip(self.input_names, inputs, strict=True))
        result: torch.Tensor = getattr(self.model(**named, return_dict=True), self.output)
        return result  # (batch, seq, dim) token embeddings, or (batch, labels) logits


class _GraphTransformer(torch.nn.Module):
    """Shared part of the runtimes: the config sentence-transformers reads, a CPU device."""

    def __init__(self, config: Any, output: str) -> None:
        super().__init__()
        self.config = config
        self.output = output

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def _feed(self, names: list[str], inputs: dict[str, Any]) -> dict[str, np.ndarray]:
        return {name: inputs[name].detach().cpu().numpy().astype(np.int64) for name in names}


class OnnxRuntimeTransformer(_GraphTransformer):
    def __init__(self, graph: Path, config: Any, output: str) -> None:
        import onnxruntime

        super().__init__(config, output)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only
        # no busy-waiting between runs: on a shared CPU, and with several sessions in one process
        # (bi-encoder, cross-encoder), spinning threads take the cores from the work
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(
            str(graph), options, providers=["CPUExecutionProvider"]
        )
        self.input_names = [node.name for node in self.session.get_inputs()]

    def forward(self, **inputs: Any) -> dict[str, torch.Tensor]:
        (result,) = self.session.run([self.output], self._feed(self.input_names, inputs))
        return {self.output: torch.from_numpy(result)}


class OpenVinoTransformer(_GraphTransformer):
    def __init__(self, graph: Path, config: Any, output: str) -> None:
        import openvino

        super().__init__(config, output)
        # fp32 arithmetic even on CPUs where OpenVINO would otherwise pick bf16
        self.compiled = openvino.Core().compile_model(
            str(graph), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
        )
        self.input_names = [node.get_any_name() for node in self.compiled.inputs]

    def forward(self, **inputs: Any) -> dict[str, torch.Tensor]:
        result = self.compiled(self._feed(self.input_names, inputs))
        return {self.output: torch.from_numpy(np.asarray(result[self.compiled.output(0)]))}


class Bf16Transformer(_GraphTransformer):
    """The Hugging Face model itself, run under CPU bfloat16 autocast (``torch-bf16``).

    Autocast computes the matrix products in bfloat16 and keeps layer norms, softmax and the
    residual sums in float32; the output goes back to float32, so pooling and normalisation run
    as in fp32. Worth it only on CPUs with native bf16 dot products (AVX512-BF16, AMX), where a
    256-token MiniLM batch runs 2.6x faster than fp32 on one thread of this project's EPYC; on
    others bf16 is emulated and slow (:func:`hardneg.core.backends.cpu_has_native_bf16`).
    Unlike the runtimes, it keeps the weights (as the wrapped model's parameters).
    """

    def __init__(self, model: torch.nn.Module, output: str) -> None:
        super().__init__(model.config, output)
        self.model = model

    def forward(self, **inputs: Any) -> dict[str, torch.Tensor]:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            result = self.model(**inputs)[self.output]
        return {self.output: result.float()}
