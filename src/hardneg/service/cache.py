"""``RedisCache``: core's ``Cache`` protocol on Redis, shared by every worker.

Values live at ``<prefix>:cache:<key>`` (``key`` is ``namespace:<sha256>`` from
``hardneg.core.cache.cache_key``) with a TTL, so a cache that is never read again expires on its
own. Hits and misses are counted per namespace in one Redis hash (``<prefix>:stats:cache``) so
the API's ``/metrics`` reports what all workers saw. Keys already name every input of a value,
so a TTL never serves a stale value; it only bounds memory. Run Redis with
``maxmemory-policy allkeys-lru`` (or ``volatile-lru``) so that, under memory pressure, cold
cache entries are evicted before anything else fails.
"""

from __future__ import annotations

import logging

import redis

from hardneg.service.jobs.keys import Keys

logger = logging.getLogger(__name__)

HITS_SUFFIX = ":hits"
MISSES_SUFFIX = ":misses"


def namespace_of(key: str) -> str:
    return key.split(":", 1)[0] if ":" in key else "default"


class RedisCache:
    """Thread-safe (redis-py pools connections). Redis errors count as misses, never crash."""

    def __init__(self, client: redis.Redis, keys: Keys, ttl_seconds: int) -> None:
        self._client = client
        self._keys = keys
        self.ttl_seconds = ttl_seconds

    def get(self, key: str) -> bytes | None:
        namespace = namespace_of(key)
        try:
            value = self._client.get(self._keys.cache(key))
        except redis.RedisError:
            logger.warning("cache read failed for namespace %s", namespace, exc_info=True)
            value = None
        self._count(namespace, HITS_SUFFIX if value is not None else MISSES_SUFFIX)
        if value is None:
            return None
        return bytes(value)  # type: ignore[arg-type]

    def set(self, key: str, value: bytes) -> None:
        try:
            self._client.set(self._keys.cache(key), value, ex=self.ttl_seconds)
        except redis.RedisError:
            logger.warning("cache write failed for namespace %s", namespace_of(key), exc_info=True)

    def _count(self, namespace: str, suffix: str) -> None:
        try:
            self._client.hincrby(self._keys.cache_stats, namespace + suffix, 1)
        except redis.RedisError:
            logger.debug("cache counter update failed", exc_info=True)

    def counters(self) -> dict[str, tuple[int, int]]:
        """namespace -> (hits, misses), as counted by every process sharing this Redis."""
        raw = self._client.hgetall(self._keys.cache_stats)
        out: dict[str, list[int]] = {}
        for field, count in raw.items():
            name = field.decode() if isinstance(field, bytes) else field
            for index, suffix in enumerate((HITS_SUFFIX, MISSES_SUFFIX)):
                if name.endswith(suffix):
                    out.setdefault(name.removesuffix(suffix), [0, 0])[index] = int(count)
        return {name: (pair[0], pair[1]) for name, pair in out.items()}
