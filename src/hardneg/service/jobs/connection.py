"""Redis clients for the service, and a clear message when Redis is not there."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import redis

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


def text_client(settings: Settings) -> redis.Redis:
    """A client that decodes replies to ``str`` (job and corpus records)."""
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=5,
        health_check_interval=30,
    )


def bytes_client(settings: Settings, url: str | None = None) -> redis.Redis:
    """A client that returns ``bytes`` (RQ and the cache need raw values)."""
    return redis.Redis.from_url(
        url or settings.redis_url, socket_connect_timeout=5, health_check_interval=30
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
