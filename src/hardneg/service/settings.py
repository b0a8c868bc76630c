"""One settings object for the CLI, the API and the workers (environment prefix ``HARDNEG_``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from hardneg.core.backends import BackendChoice
from hardneg.core.encoders import DEFAULT_MODEL
from hardneg.core.workspace import default_home
from hardneg.miners.llm.backends import DEFAULT_CONCURRENCY, Backend, BackendConfig
from hardneg.miners.llm.llama_cpp_client import Weights


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HARDNEG_", env_file=".env", extra="ignore")

    home: Path = Field(default_factory=default_home, description="data directory for all artifacts")
    model: str = Field(DEFAULT_MODEL, description="default bi-encoder (hub id or local path)")
    device: str | None = Field(
        None, description="torch device; default cuda when present, else cpu"
    )
    train_processes: int | None = Field(
        None,
        ge=1,
        description="experiment: (arm, seed) training runs at once, each in its own process on "
        "its share of the cores; default: 2 on a CPU with 2 or more cores, 1 on a GPU",
    )
    encoder_backend: BackendChoice = Field(
        "auto",
        description="how bi-encoders run: torch, onnx, onnx-int8, openvino or openvino-int8 "
        "(exported once into the data directory, CPU only); auto: torch on a GPU, the measured "
        "CPU default on a CPU (hardneg.core.backends.CPU_DEFAULT)",
    )
    data_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="folders searched for BEIR datasets by name before downloading; "
        "in the environment a path list like PATH (HARDNEG_DATA_DIRS=/data/beir:/mnt/beir)",
    )
    beir_base_url: str = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"
    download_timeout_seconds: float = Field(
        60.0, gt=0, description="dataset downloads: seconds to connect, and between two blocks"
    )
    redis_url: str = "redis://127.0.0.1:6379/0"

    # --- service: Redis layout -------------------------------------------------------------
    redis_prefix: str = Field(
        "hardneg",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="namespace of every Redis key the service writes (and of the RQ queue name)",
    )
    cache_redis_url: str | None = Field(
        None,
        description="a separate Redis for cached values (candidate lists, LLM outputs), run with "
        "maxmemory-policy allkeys-lru; default: the main Redis",
    )
    cache_ttl_seconds: int = Field(
        7 * 24 * 3600, ge=1, description="lifetime of a cached value (candidate lists, LLM outputs)"
    )
    idempotency_ttl_seconds: int = Field(24 * 3600, ge=1, description="Idempotency-Key memory")

    # --- service: API ----------------------------------------------------------------------
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="bearer keys accepted by the API; when empty the API is open. "
        "In the environment a comma-separated list (HARDNEG_API_KEYS=key1,key2)",
    )
    allowed_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="server-side folders under which datasets and models may be registered by "
        "path; a path list like PATH. Empty: registering by path is refused",
    )
    allow_hub_models: bool = Field(
        False,
        description="accept model hub ids in job parameters (downloaded by the worker, with no "
        "size cap); off: job models, paths under allowed_roots and the default model only",
    )
    allow_unlisted_datasets: bool = Field(
        False,
        description="register BEIR names that have no published checksum (downloaded "
        "unverified); off: only the names of hardneg.core.download.BEIR_MD5, or folders already "
        "in data_dirs",
    )
    secure_cookies: bool | None = Field(
        None,
        description="mark the dashboard's cookies Secure; default: when the request came over "
        "HTTPS (directly, or X-Forwarded-Proto from a trusted proxy)",
    )
    max_upload_bytes: int = Field(512 * 1024**2, ge=1, description="largest accepted upload")
    max_decompressed_bytes: int = Field(
        2 * 1024**3,
        ge=1,
        description="largest gzip upload once decompressed (it is decompressed as it arrives, "
        "and refused with 413 the moment it passes this)",
    )
    max_compression_ratio: float = Field(
        100.0,
        ge=1,
        description="largest decompressed/compressed size ratio of a gzip upload, checked once "
        "more than compression_ratio_floor_bytes have been decompressed (text JSONL gzips 3-10x; "
        "a gzip bomb 1000x)",
    )
    compression_ratio_floor_bytes: int = Field(
        16 * 1024**2,
        ge=0,
        description="decompressed bytes below which the compression ratio is not checked",
    )
    public_docs: bool = Field(True, description="serve /docs and /openapi.json without a key")
    max_connections: int = Field(
        1000,
        ge=1,
        description="`hardneg serve`: open connections (and requests in flight) beyond which new "
        "requests get 503 (uvicorn's limit_concurrency)",
    )
    keep_alive_seconds: int = Field(
        5, ge=1, description="`hardneg serve`: an idle keep-alive connection is closed after this"
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="`hardneg serve`: a connection that has not sent a complete request head "
        "this long after it opened (or after its last response) is closed",
    )
    body_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="a request body that stops arriving for this long, or arrives slower than "
        "min_body_bytes_per_second on average after this long, is cut off with 408",
    )
    min_body_bytes_per_second: int = Field(
        1024, ge=0, description="slowest average upload rate accepted (see body_timeout_seconds)"
    )
    trusted_proxies: str = Field(
        "127.0.0.1",
        description="`hardneg serve`: addresses whose X-Forwarded-For/-Proto headers are believed "
        "(uvicorn's forwarded_allow_ips; '*' for any)",
    )
    host: str = Field("127.0.0.1", description="`hardneg serve` bind address")
    port: int = Field(8000, ge=1, le=65535, description="`hardneg serve` port")

    # --- service: jobs ---------------------------------------------------------------------
    job_max_attempts: int = Field(
        3, ge=1, le=20, description="runs of a job whose worker died before it is marked failed"
    )
    job_timeout_seconds: int = Field(
        3 * 24 * 3600, ge=1, description="hard limit on one run of a job"
    )
    job_lease_seconds: float = Field(
        30.0, gt=0, description="a running job whose lease is not renewed this long is lost"
    )
    reap_interval_seconds: float = Field(
        5.0, gt=0, description="how often each worker looks for lost jobs and stale cancels"
    )
    cancel_grace_seconds: float = Field(
        15.0, ge=0, description="after a cancel, how long a job may run before it is killed"
    )
    worker_heartbeat_seconds: float = Field(
        5.0, gt=0, description="how often a worker announces itself (for /readyz)"
    )

    # --- service: LLM backend for generation jobs (the miners' openai backend) -----------------
    llm_backend: Backend = Field(
        "llama_cpp",
        description="llama_cpp (in-process GGUF) or openai (an OpenAI-compatible server)",
    )
    llm_base_url: str = Field(
        "http://127.0.0.1:8001/v1", description="OpenAI-compatible endpoint, e.g. vLLM's /v1"
    )
    llm_model: str | None = Field(
        None, description="model name at the endpoint (openai) or a .gguf path (llama_cpp)"
    )
    llm_api_key_env: str = Field(
        "OPENAI_API_KEY", description="name of the variable holding the endpoint's key"
    )
    llm_timeout_seconds: float = Field(
        120.0, gt=0, description="openai: how long one call may take before it is retried"
    )
    llm_max_retries: int = Field(
        4, ge=0, le=20, description="openai: retries of a call that timed out or got garbage"
    )
    llm_concurrency: int = Field(
        DEFAULT_CONCURRENCY,
        ge=1,
        le=64,
        description="generations at once: sequences decoded together in one llama.cpp batch "
        "(llama_cpp) or requests in flight (openai); 1 runs them one at a time",
    )
    llm_weights: Weights = Field(  # the spec's own default and words
        BackendConfig.model_fields["weights"].default,
        description=BackendConfig.model_fields["weights"].description,
    )

    @field_validator("data_dirs", "allowed_roots", mode="before")
    @classmethod
    def _split_path_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part for part in value.split(os.pathsep) if part.strip()]
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def llm_config(self) -> BackendConfig:
        """The server's LLM: the ``backend`` part of every job that uses one."""
        return BackendConfig(
            backend=self.llm_backend,
            model=self.llm_model,
            base_url=self.llm_base_url,
            api_key_env=self.llm_api_key_env,
            timeout_s=self.llm_timeout_seconds,
            max_retries=self.llm_max_retries,
            concurrency=self.llm_concurrency,
            weights=self.llm_weights,
        )

    @property
    def queue_name(self) -> str:
        """The RQ queue the API enqueues on and the workers listen to."""
        return f"{self.redis_prefix}-jobs"
