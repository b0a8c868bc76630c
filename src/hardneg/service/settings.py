"""One settings object for the CLI, the API and the workers (environment prefix ``HARDNEG_``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from hardneg.core.encoders import DEFAULT_MODEL
from hardneg.core.workspace import default_home


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HARDNEG_", env_file=".env", extra="ignore")

    home: Path = Field(default_factory=default_home, description="data directory for all artifacts")
    model: str = Field(DEFAULT_MODEL, description="default bi-encoder (hub id or local path)")
    device: str | None = Field(
        None, description="torch device; default cuda when present, else cpu"
    )
    data_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="folders searched for BEIR datasets by name before downloading; "
        "in the environment a path list like PATH (HARDNEG_DATA_DIRS=/data/beir:/mnt/beir)",
    )
    beir_base_url: str = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"
    redis_url: str = "redis://127.0.0.1:6379/0"


    @field_validator("data_dirs", mode="before")
    @classmethod
    def _split_path_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part for part in value.split(os.pathsep) if part.strip()]
        return value


def get_settings() -> Settings:
    return Settings()
