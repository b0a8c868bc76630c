"""Pick and open an LLM backend from one flat configuration (what the CLI and the jobs pass)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from hardneg.miners.llm.client import LLMClient
from hardneg.miners.llm.llama_cpp_client import LlamaCppClient, LlamaCppConfig
from hardneg.miners.llm.openai_client import OpenAIClient, OpenAIConfig

Backend = Literal["llama_cpp", "openai"]
BACKENDS: tuple[Backend, ...] = ("llama_cpp", "openai")
DEFAULT_CONCURRENCY = 8  # the fastest of 4, 8, 16: bench/results/performance.json, llm


@dataclass(frozen=True)
class BackendConfig:
    backend: Backend = "llama_cpp"
    model: str | None = None  # llama_cpp: a .gguf path (None: SmolLM2); openai: the model name
    base_url: str = OpenAIConfig.base_url
    api_key_env: str | None = OpenAIConfig.api_key_env
    # llama_cpp: sequences decoded together (1: one at a time); openai: requests in flight
    concurrency: int = DEFAULT_CONCURRENCY
    timeout_s: float = OpenAIConfig.timeout_s
    max_retries: int = OpenAIConfig.max_retries
    n_ctx: int = LlamaCppConfig.n_ctx
    n_threads: int | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown LLM backend {self.backend!r} (choose {', '.join(BACKENDS)})")
        if self.backend == "openai" and not self.model:
            raise ValueError("the openai backend needs a model name")

    def describe(self) -> dict[str, object]:
        """Provenance for output metadata (the API key's variable name, never its value)."""
        if self.backend == "openai":
            return {"backend": self.backend, "base_url": self.base_url, "model": self.model}
        return {"backend": self.backend, "model": self.model or "SmolLM2-135M-Instruct (default)"}


@contextlib.contextmanager
def open_client(config: BackendConfig) -> Iterator[LLMClient]:
    """The configured client; HTTP connections or the loaded model are released on exit."""
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
        path, n_ctx=config.n_ctx, n_threads=config.n_threads, concurrency=config.concurrency
    )
    with LlamaCppClient(llama) as client:
        yield client


_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "base_url": (str,),
    "api_key_env": (str,),
    "concurrency": (int,),
    "timeout_s": (int, float),
    "max_retries": (int,),
    "n_ctx": (int,),
    "n_threads": (int,),
}


def backend_from_options(options: Mapping[str, object], prefix: str = "llm_") -> BackendConfig:
    """Read ``<prefix>backend``, ``<prefix>model``, ... from a job's free-form options."""
    values: dict[str, object] = {}
    backend = options.get(f"{prefix}backend", "llama_cpp")
    if backend not in BACKENDS:
        raise ValueError(f"option {prefix}backend must be one of {list(BACKENDS)}, got {backend!r}")
    for name, types in _OPTION_TYPES.items():
        value = options.get(prefix + name)
        if value is None:
            continue
        if not isinstance(value, types) or isinstance(value, bool):
            raise ValueError(f"option {prefix}{name} must be {types[0].__name__}, got {value!r}")
        values[name] = value
    return BackendConfig(backend=cast(Backend, backend), **values)  # type: ignore[arg-type]
