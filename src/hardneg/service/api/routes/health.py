"""``/healthz`` (liveness), ``/readyz`` (Redis and workers) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from hardneg.service.api.deps import ServicesDep
from hardneg.service.api.errors import Responses, responses
from hardneg.service.api.schemas import Readiness
from hardneg.service.api.security import require_api_key
from hardneg.service.jobs.worker import alive_workers

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers. No key needed."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
def readyz(services: ServicesDep, response: Response) -> Readiness:
    """Redis answers and at least one worker sent a heartbeat recently. No key needed."""
    try:
        services.raw.ping()
        workers = alive_workers(services)
        redis_ok = True
    except Exception:
        redis_ok, workers = False, 0
    ready = redis_ok and workers > 0
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(redis=redis_ok, workers=workers, ready=ready)


PROMETHEUS_TEXT: Responses = {
    200: {
        "description": "Prometheus text exposition format",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


@router.get(
    "/metrics",
    dependencies=[Depends(require_api_key)],
    response_class=Response,
    responses=PROMETHEUS_TEXT | responses(401),
)
def metrics(request: Request) -> Response:
    """Prometheus text format: jobs by state, cache hits/misses, workers, request latency."""
    registry: CollectorRegistry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
