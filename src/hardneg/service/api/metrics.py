"""Prometheus metrics: request latency (measured here), jobs, cache and workers (read from Redis).

Job counts, cache hits/misses and live workers come from Redis at scrape time, so every API
replica reports the same numbers and nothing is lost when a process restarts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hardneg.service.api.asgi import HttpMiddleware
from hardneg.service.jobs.services import Services
from hardneg.service.jobs.worker import alive_workers

logger = logging.getLogger(__name__)


class ServiceCollector(Collector):
    def __init__(self, services: Services) -> None:
        self._services = services

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        try:
            counts = self._services.jobs.counts_by_state()
            cache = self._services.cache.counters()
            workers = alive_workers(self._services)
        except Exception:  # a scrape must not fail because Redis is briefly away
            logger.warning("metrics: Redis unavailable", exc_info=True)
            return
        jobs = GaugeMetricFamily("hardneg_jobs", "Jobs by state", labels=["state"])
        for state, count in counts.items():
            jobs.add_metric([state], count)
        yield jobs
        hits = CounterMetricFamily(
            "hardneg_cache_hits", "Cache hits by namespace", labels=["namespace"]
        )
        misses = CounterMetricFamily(
            "hardneg_cache_misses", "Cache misses by namespace", labels=["namespace"]
        )
        for namespace, (hit, miss) in sorted(cache.items()):
            hits.add_metric([namespace], hit)
            misses.add_metric([namespace], miss)
        yield hits
        yield misses
        yield GaugeMetricFamily("hardneg_workers_alive", "Workers with a recent heartbeat", workers)


def make_registry(services: Services) -> tuple[CollectorRegistry, Histogram]:
    registry = CollectorRegistry(auto_describe=True)
    latency = Histogram(
        "hardneg_http_request_duration_seconds",
        "HTTP request latency by route template",
        labelnames=["method", "route", "status"],
        registry=registry,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    )
    registry.register(ServiceCollector(services))
    return registry, latency


class LatencyMiddleware(HttpMiddleware):
    """Observes every HTTP request; the route label is the template (``/v1/jobs/{job_id}``)."""

    def __init__(self, app: ASGIApp, latency: Histogram) -> None:
        super().__init__(app)
        self.latency = latency

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.latency.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - started
            )
