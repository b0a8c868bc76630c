"""The FastAPI application factory."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from hardneg.service.api.docs import ASSETS, install_docs
from hardneg.service.api.errors import install_handlers
from hardneg.service.api.headers import SecurityHeadersMiddleware
from hardneg.service.api.job_reads import JobReader
from hardneg.service.api.json_body import JsonBodyMiddleware
from hardneg.service.api.limits import BodyLimitMiddleware
from hardneg.service.api.metrics import LatencyMiddleware, make_registry
from hardneg.service.api.routes import corpora, dashboard, health, jobs
from hardneg.service.api.security import KeyGate
from hardneg.service.api.timeouts import BodyTimeoutMiddleware
from hardneg.service.jobs.corpora import uploads_root
from hardneg.service.jobs.corpus_lock import recover_interrupted, sweep_orphans
from hardneg.service.jobs.scratch import sweep
from hardneg.service.jobs.services import Services
from hardneg.service.jobs.snapshots import sweep_snapshots
from hardneg.service.settings import Settings

logger = logging.getLogger(__name__)

DESCRIPTION = """
Turn a corpus into a better dense retriever. Upload or register a corpus, submit jobs
(evaluation, mining, training, generation), watch their progress, page through results and
download artifacts. Long work runs on `hardneg worker` processes, never in a request.

Authentication: `Authorization: Bearer <key>` on every route except `/healthz` and `/readyz`
whenever the server has API keys configured (`HARDNEG_API_KEYS`). These docs and the OpenAPI
schema are public unless `HARDNEG_PUBLIC_DOCS=false`, which turns them off.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    services = Services.connect(settings)
    registry, latency = make_registry(services)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.home.mkdir(parents=True, exist_ok=True)
        sweep(uploads_root(settings.home))  # uploads a killed API left half-written
        with contextlib.suppress(RedisError):  # corpus folders no record names
            await run_in_threadpool(recover_interrupted, settings.home, services.corpora)
            await run_in_threadpool(sweep_orphans, settings.home, services.corpora)
            await run_in_threadpool(sweep_snapshots, settings.home, services.jobs)
        logger.info(
            "API on data directory %s, queue %s, %d API key(s)",
            settings.home,
            settings.queue_name,
            len(settings.api_keys),
        )
        app.state.job_reader = JobReader(settings)  # bound to this event loop
        yield
        await app.state.job_reader.close()
        services.close()

    app = FastAPI(
        title="hardneg",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # install_docs: Swagger UI from local files
        redoc_url=None,
        openapi_url="/openapi.json" if settings.public_docs else None,
    )
    app.state.services = services
    app.state.api_keys = [key.get_secret_value().encode() for key in settings.api_keys]
    app.state.metrics_registry = registry
    open_paths = {"/healthz", "/readyz"}
    open_prefixes: tuple[str, ...] = dashboard.OPEN_PREFIXES
    if settings.public_docs:
        open_paths |= {"/docs", "/openapi.json"}
        open_prefixes = (*open_prefixes, f"{ASSETS}/")
        install_docs(app, "/openapi.json")
    app.add_middleware(BodyLimitMiddleware, routes=app)
    app.add_middleware(
        BodyTimeoutMiddleware,
        seconds=settings.body_timeout_seconds,
        min_rate=settings.min_body_bytes_per_second,
    )
    app.add_middleware(JsonBodyMiddleware)  # `curl -d '{...}'` declares a form
    # the dashboard's pages check the key themselves (cookie or header) and redirect to sign in
    open_paths |= dashboard.OPEN_PATHS
    app.add_middleware(
        KeyGate,
        keys=app.state.api_keys,
        open_paths=frozenset(open_paths),
        open_prefixes=open_prefixes,
    )
    app.add_middleware(LatencyMiddleware, latency=latency)
    app.add_middleware(SecurityHeadersMiddleware)
    install_handlers(app)
    app.include_router(health.router)
    app.include_router(corpora.router)
    app.include_router(jobs.router)
    app.include_router(dashboard.router)
    return app
