"""Typed dependencies: ``Annotated[X, Depends(...)]`` aliases the routes declare.

They only read the application's state, so they are ``async``: FastAPI runs a plain ``def``
dependency in its thread pool, a hop per dependency per request that costs more than the work.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from hardneg.service.api.job_reads import JobReader
from hardneg.service.api.security import Principal, require_api_key
from hardneg.service.jobs.services import Services


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_job_reader(request: Request) -> JobReader:
    """The app's asyncio job reader (made by the lifespan; here when an app runs without it)."""
    reader: JobReader | None = getattr(request.app.state, "job_reader", None)
    if reader is None:
        reader = request.app.state.job_reader = JobReader(request.app.state.services.settings)
    return reader


ServicesDep = Annotated[Services, Depends(get_services)]
JobReaderDep = Annotated[JobReader, Depends(get_job_reader)]
PrincipalDep = Annotated[Principal, Depends(require_api_key)]
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", max_length=255, description="replay-safe retries")
]
