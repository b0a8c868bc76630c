"""The LLM backend of a spec (:class:`BackendConfig`), and the client it opens."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, model_validator

from hardneg.core.spec import Section, server_owned
from hardneg.miners.llm.client import LLMClient
from hardneg.miners.llm.llama_cpp_client import LlamaCppClient, LlamaCppConfig, Weights
from hardneg.miners.llm.openai_client import OpenAIClient, OpenAIConfig

Backend = Literal["llama_cpp", "openai"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)
# bench/results/performance.json, llm, quiet 2-core machine: 4, 8 and 16 take 50.5, 47.0 and
# 46.3 s for 64 prompts (one at a time: 50.2 s); 8 keeps more outputs equal to one-at-a-time
# ones (62 vs 57 of 64) for 1.5% less speed than 16
DEFAULT_CONCURRENCY = 8


class BackendConfig(Section):
    """Which LLM answers, and how it is called: one typed part of every spec that uses an LLM."""

    flat_prefix = "llm_"

    backend: Backend = Field("llama_cpp", description="llama_cpp (in-process GGUF) or openai")
    model: str | None = Field(
        None, description="llama_cpp: a .gguf path (null: SmolLM2-135M); openai: the model name"
    )
    base_url: str = Field(
        OpenAIConfig.base_url, description="openai: endpoint base URL, e.g. http://host:8000/v1"
    )
    api_key_env: str | None = Field(
        OpenAIConfig.api_key_env, description="openai: environment variable holding the API key"
    )
    concurrency: int = Field(
        DEFAULT_CONCURRENCY,
        ge=1,
        le=64,
        description="generations at once: sequences decoded together in one llama.cpp batch "
        "(llama_cpp) or requests in flight (openai); 1 runs them one at a time",
    )
    timeout_s: float = Field(
        OpenAIConfig.timeout_s, gt=0, description="openai: seconds per attempt"
    )
    max_retries: int = Field(OpenAIConfig.max_retries, ge=0, le=20, description="retries per call")
    n_ctx: int = Field(LlamaCppConfig.n_ctx, ge=1, description="llama_cpp: context window (tokens)")
    n_threads: int | None = Field(None, ge=1, description="llama_cpp: CPU threads")
    weights: Weights = Field(
        "auto",
        description="llama_cpp: the weights that compute: the file's own, or an F16 copy "
        "written once under the data directory (faster on a CPU for a small model); auto: "
        "F16 for the default model, the file's own for any other",
    )

    @model_validator(mode="after")
    def _openai_needs_a_model(self) -> BackendConfig:
        if self.backend == "openai" and not self.model:
            raise ValueError("the openai backend needs a model name")
        return self

    def describe(self) -> dict[str, object]:
        """Provenance for output metadata (the API key's variable name, never its value)."""
        if self.backend == "openai":
            return {"backend": self.backend, "base_url": self.base_url, "model": self.model}
        model = self.model or "SmolLM2-135M-Instruct (default)"
        return {"backend": self.backend, "model": model, "weights": self.weights}


def server_llm() -> Any:
    """The ``BackendConfig`` field of a spec whose LLM the service fills in from its settings
    (``Settings.llm_config``): a request cannot point the workers at another endpoint."""
    return Field(
        default_factory=BackendConfig,
        json_schema_extra=server_owned("the server's LLM (HARDNEG_LLM_*)"),
    )


@contextlib.contextmanager
def open_client(config: BackendConfig, exports: Path | None = None) -> Iterator[LLMClient]:
    """The configured client; HTTP connections or the loaded model are released on exit.
    ``exports``: where llama_cpp keeps converted weights (without it, ``auto`` computes with the
    file's own)."""
    if config.backend == "openai":
        openai = OpenAIConfig(
            base_url=config.base_url,
            model=config.model or "",
            api_key_env=config.api_key_env,
            concurrency=config.concurrency,
            timeout_s=config.timeout_s,
            max_retries=config.max_retries,
        )
        with OpenAIClient(openai) as client:
            yield client
        return
    path = Path(config.model).expanduser() if config.model else None
    llama = LlamaCppConfig(
        path,
        n_ctx=config.n_ctx,
        n_threads=config.n_threads,
        concurrency=config.concurrency,
        weights=config.weights,
        exports=exports,
    )
    with LlamaCppClient(llama) as client:
        yield client
