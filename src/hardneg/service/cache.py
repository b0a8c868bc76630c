"""``RedisCache``: core's ``Cache`` protocol on Redis, shared by every worker.

Values live at ``<prefix>:cache:<key>`` (``key`` is ``namespace:<sha256>`` from
``hardneg.core.cache.cache_key``) with a TTL, so a value nobody reads again expires on its own.
Keys name every input of a value, so a TTL never guards against staleness; it only bounds memory.
Hits and misses are counted per namespace in a hash on the main Redis (``<prefix>:stats:cache``),
so the API's ``/metrics`` reports what every worker saw.

Values may live on their own Redis (``HARDNEG_CACHE_REDIS_URL``) run with
``maxmemory-policy allkeys-lru``: under memory pressure the coldest values go first and nothing
else is at risk. On a single shared Redis use ``volatile-lru`` instead (only keys with a TTL are
evicted), never ``allkeys-lru``: that could evict job records and queues.
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

    def __init__(
        self, values: redis.Redis, stats: redis.Redis, keys: Keys, ttl_seconds: int
    ) -> None:
        self._values = values  # may be a dedicated, evicting Redis
        self._stats = stats  # the main Redis: counters survive evictions
        self._keys = keys
        self.ttl_seconds = ttl_seconds

    def get(self, key: str) -> bytes | None:
        namespace = namespace_of(key)
        try:
            value = self._values.get(self._keys.cache(key))
        except redis.RedisError:
            logger.warning("cache read failed for namespace %s", namespace, exc_info=True)
            value = None
        self._count(namespace, HITS_SUFFIX if value is not None else MISSES_SUFFIX)
        if value is None:
            return None
        return bytes(value)  # type: ignore[arg-type]

    def set(self, key: str, value: bytes) -> None:
        try:
            self._values.set(self._keys.cache(key), value, ex=self.ttl_seconds)
        except redis.RedisError:
            logger.warning("cache write failed for namespace %s", namespace_of(key), exc_info=True)

    def _count(self, namespace: str, suffix: str) -> None:
        try:
            self._stats.hincrby(self._keys.cache_stats, namespace + suffix, 1)
        except redis.RedisError:
            logger.debug("cache counter update failed", exc_info=True)

    def counters(self) -> dict[str, tuple[int, int]]:
        """namespace -> (hits, misses), as counted by every process sharing this Redis."""
        raw = self._stats.hgetall(self._keys.cache_stats)
        out: dict[str, list[int]] = {}
        for field, count in raw.items():
            name = field.decode() if isinstance(field, bytes) else field
            for index, suffix in enumerate((HITS_SUFFIX, MISSES_SUFFIX)):
                if name.endswith(suffix):
                    out.setdefault(name.removesuffix(suffix), [0, 0])[index] = int(count)
        return {name: (pair[0], pair[1]) for name, pair in out.items()}

    def close(self) -> None:
        self._values.close()
