"""``hardneg serve``: the REST API under uvicorn (needs Redis; jobs run on ``hardneg worker``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from hardneg.service.commands.errors import reported

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024  # request line and headers (h11; httptools has its own limit)


def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default $HARDNEG_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default $HARDNEG_PORT)")] = None,
    home: Annotated[
        Path | None, typer.Option(help="data directory shared with the workers ($HARDNEG_HOME)")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Serve the REST API (/v1, /docs, /healthz, /readyz, /metrics)."""
    import uvicorn

    from hardneg.service.jobs.connection import RedisUnavailableError, require_redis
    from hardneg.service.settings import Settings

    if home is not None:  # uvicorn's factory builds Settings() from the environment
        os.environ["HARDNEG_HOME"] = str(home)
    settings = Settings()
    try:
        require_redis(settings)
    except RedisUnavailableError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    if not settings.api_keys:
        logger.warning("no API keys configured (HARDNEG_API_KEYS): the API is open to anyone")
    from hardneg.service.api.server import HTTP_PROTOCOL

    uvicorn.run(
        "hardneg.service.api.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level=log_level,
        proxy_headers=True,
        forwarded_allow_ips=settings.trusted_proxies,
        # connection limits (README "Reliability"): a cap, keep-alive, a deadline on the head
        # (HTTP_PROTOCOL) and on the body (the app's BodyTimeoutMiddleware)
        http=HTTP_PROTOCOL,
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=settings.keep_alive_seconds,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(reported(serve))
