"""Redis clients for the service, and a clear message when Redis is not there.

Clients built with ``patient=True`` (the workers and the runs they execute) ride out a Redis
restart: a command that meets a dropped or refused connection is retried with exponential
backoff for about :data:`PATIENCE_SECONDS` before the error reaches the caller, so a job keeps
running (and its record keeps its writes) while Redis comes back from its append-only file.
The API's clients retry only twice (a pooled connection that a restart closed is replaced
without failing the request) and otherwise fail fast, so ``/readyz`` reports an unreachable
Redis at once.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from hardneg.service.settings import Settings

START_REDIS_HINT = (
    "start one with `docker compose up -d redis` (from the repository root), or "
    "`redis-server --port 6379 --daemonize yes --appendonly yes`, or point HARDNEG_REDIS_URL "
    "at a running server"
)


class RedisUnavailableError(RuntimeError):
    """Redis did not answer; the message says how to start one."""


def redacted_url(url: str) -> str:
    """The Redis URL without its password, safe for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# backoff 0.1 s doubling to 1 s between tries: 12 retries wait 9.5 s in all, 2 wait 0.3 s
PATIENT_RETRIES, QUICK_RETRIES = 12, 2
_BACKOFF = ExponentialBackoff(cap=1.0, base=0.05)
PATIENCE_SECONDS = sum(_BACKOFF.compute(n) for n in range(1, PATIENT_RETRIES + 1))


def _retry(patient: bool) -> Retry:
    # connection errors only: a timed-out command may have run, and is not ours to repeat
    retries = PATIENT_RETRIES if patient else QUICK_RETRIES
    return Retry(_BACKOFF, retries, (redis.ConnectionError,))


def text_client(settings: Settings, patient: bool = False) -> redis.Redis:
    """A client that decodes replies to ``str`` (job and corpus records)."""
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry=_retry(patient),
    )


def bytes_client(settings: Settings, url: str | None = None, patient: bool = False) -> redis.Redis:
    """A client that returns ``bytes`` (RQ and the cache need raw values)."""
    return redis.Redis.from_url(
        url or settings.redis_url,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry=_retry(patient),
    )


def require_redis(settings: Settings) -> None:
    """Raise :class:`RedisUnavailableError` unless Redis answers a PING."""
    client = bytes_client(settings)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise RedisUnavailableError(
            f"cannot reach Redis at {redacted_url(settings.redis_url)} ({type(exc).__name__}); "
            + START_REDIS_HINT
        ) from None
    finally:
        client.close()
