"""Typed dependencies: ``Annotated[X, Depends(...)]`` aliases the routes declare."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from hardneg.service.api.security import Principal, require_api_key
from hardneg.service.jobs.services import Services
from hardneg.service.settings import Settings


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.services.settings
    return settings


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
PrincipalDep = Annotated[Principal, Depends(require_api_key)]
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", max_length=255, description="replay-safe retries")
]
