"""One settings object for the CLI, the API and the workers (environment prefix ``HARDNEG_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from hardneg.core.encoders import DEFAULT_MODEL
from hardneg.core.workspace import default_home


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HARDNEG_", env_file=".env", extra="ignore")

    home: Path = Field(default_factory=default_home, description="data directory for all artifacts")
    model: str = Field(DEFAULT_MODEL, description="default bi-encoder (hub id or local path)")
    device: str | None = Field(
        None, description="torch device; default cuda when present, else cpu"
    )
    data_dirs: list[Path] = Field(
        default_factory=list,
        description="folders searched for BEIR datasets by name before downloading "
        '(JSON list in the environment, e.g. HARDNEG_DATA_DIRS=\'["../shared/data/beir"]\')',
    )
    beir_base_url: str = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"
    redis_url: str = "redis://127.0.0.1:6379/0"


def get_settings() -> Settings:
    return Settings()
