"""``RedisCache``: core's ``Cache`` protocol on Redis, shared by every worker, computed once.

Values live at ``<prefix>:cache:<key>`` (``key`` is ``namespace:<sha256>`` from
``hardneg.core.cache.cache_key``) with a TTL, so a value nobody reads again expires on its own.
Keys name every input of a value, so a TTL never guards against staleness; it only bounds memory.
Hits and misses are counted per namespace in a hash on the main Redis (``<prefix>:stats:cache``),
so the API's ``/metrics`` reports what every worker saw.

Single flight: a miss *claims* the key (``<prefix>:cache-claim:<key>``, a token with a short
TTL) and the caller computes the value; ``set`` stores it and drops the claim. Another process
that misses while the claim is held waits for the value instead of computing it again, so jobs
that need the same candidate lists at the same time compute them once. A claim lives only while
its owner does: the job runner renews its claims with its lease and drops them when the attempt
ends, and a killed process's claims expire within a lease, after which a waiter computes. A
process that holds a claim never waits for another's (no two jobs can wait on each other).

Values may live on their own Redis (``HARDNEG_CACHE_REDIS_URL``) run with
``maxmemory-policy allkeys-lru``: under memory pressure the coldest values go first and nothing
else is at risk. On a single shared Redis use ``volatile-lru`` instead (only keys with a TTL are
evicted), never ``allkeys-lru``: that could evict job records and queues.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass

import redis

logger = logging.getLogger(__name__)

HITS_SUFFIX = ":hits"
MISSES_SUFFIX = ":misses"
POLL_FIRST, POLL_MAX = 0.05, 0.5  # seconds between two looks at a value being computed

# KEYS: claim. ARGV: token. Delete the claim only if it is still ours.
_DROP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: claim. ARGV: token, ttl ms. Extend the claim only if it is still ours.
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


VALUE_PREFIX = "cache:"  # string with TTL: one cached value
CLAIM_PREFIX = "cache-claim:"  # string with TTL: token of the process computing a value
STATS_KEY = "stats:cache"  # hash: "<namespace>:hits" / "<namespace>:misses" -> count


@dataclass(frozen=True)
class CacheKeys:
    """The cache's Redis keys under the service's namespace (``settings.redis_prefix``); the
    jobs' and corpora's are :class:`hardneg.service.jobs.keys.Keys`."""

    namespace: str

    def value(self, key: str) -> str:
        return f"{self.namespace}:{VALUE_PREFIX}{key}"

    def claim(self, key: str) -> str:
        return f"{self.namespace}:{CLAIM_PREFIX}{key}"

    @property
    def stats(self) -> str:
        return f"{self.namespace}:{STATS_KEY}"


def namespace_of(key: str) -> str:
    return key.split(":", 1)[0] if ":" in key else "default"


class RedisCache:
    """Thread-safe (redis-py pools connections). Redis errors count as misses, never crash."""

    def __init__(
        self,
        values: redis.Redis,
        stats: redis.Redis,
        namespace: str,
        ttl_seconds: int,
        claim_seconds: float = 30.0,
    ) -> None:
        self._values = values  # may be a dedicated, evicting Redis
        self._stats = stats  # the main Redis: counters and claims survive evictions
        self.keys = CacheKeys(namespace)
        self.ttl_seconds = ttl_seconds
        self._claim_ms = max(int(claim_seconds * 1000), 100)
        self._claims: dict[str, str] = {}  # cache key -> our token
        self._lock = threading.Lock()
        self._drop = stats.register_script(_DROP)
        self._extend = stats.register_script(_EXTEND)

    def get(self, key: str) -> bytes | None:
        """The value, else None and the key is claimed (the caller computes, then ``set``s).

        While another process holds the claim, wait for its value (unless we hold claims).
        """
        namespace = namespace_of(key)
        waited, delay = False, POLL_FIRST
        while True:
            value = self._read(key, namespace)
            if value is not None or self._claim(key) or self.holding():
                break
            waited = True
            time.sleep(delay)
            delay = min(delay * 2, POLL_MAX)
        if waited:
            logger.info("cache %s: waited for a value another job was computing", namespace)
        self._count(namespace, HITS_SUFFIX if value is not None else MISSES_SUFFIX)
        return value

    def set(self, key: str, value: bytes) -> None:
        try:
            self._values.set(self.keys.value(key), value, ex=self.ttl_seconds)
        except redis.RedisError:
            logger.warning("cache write failed for namespace %s", namespace_of(key), exc_info=True)
        self._release(key)

    def holding(self) -> bool:
        """Whether this process holds claims (values it promised to compute)."""
        with self._lock:
            return bool(self._claims)

    def renew_claims(self) -> None:
        """Extend this process's claims (the job runner calls this with every lease renewal)."""
        with self._lock:
            held = dict(self._claims)
        for key, token in held.items():
            try:
                self._extend(keys=[self.keys.claim(key)], args=[token, self._claim_ms])
            except redis.RedisError:
                logger.debug("cache claim renewal failed", exc_info=True)

    def release_claims(self) -> None:
        """Drop every claim this process holds (its run ended, with or without the values)."""
        with self._lock:
            held = list(self._claims)
        for key in held:
            self._release(key)

    def _read(self, key: str, namespace: str) -> bytes | None:
        try:
            value = self._values.get(self.keys.value(key))
        except redis.RedisError:
            logger.warning("cache read failed for namespace %s", namespace, exc_info=True)
            return None
        return None if value is None else bytes(value)  # type: ignore[arg-type]

    def _claim(self, key: str) -> bool:
        """Claim ``key``: True when it is ours to compute (Redis errors: compute anyway)."""
        with self._lock:
            if key in self._claims:
                return True
        token = uuid.uuid4().hex
        try:
            taken = self._stats.set(self.keys.claim(key), token, nx=True, px=self._claim_ms)
        except redis.RedisError:
            logger.warning("cache claim failed for %s", namespace_of(key), exc_info=True)
            return True
        if taken:
            with self._lock:
                self._claims[key] = token
        return bool(taken)

    def _release(self, key: str) -> None:
        with self._lock:
            token = self._claims.pop(key, None)
        if token is None:
            return
        try:
            self._drop(keys=[self.keys.claim(key)], args=[token])
        except redis.RedisError:
            logger.debug("cache claim release failed (it expires on its own)", exc_info=True)

    def _count(self, namespace: str, suffix: str) -> None:
        try:
            self._stats.hincrby(self.keys.stats, namespace + suffix, 1)
        except redis.RedisError:
            logger.debug("cache counter update failed", exc_info=True)

    def counters(self) -> dict[str, tuple[int, int]]:
        """namespace -> (hits, misses), as counted by every process sharing this Redis."""
        raw = self._stats.hgetall(self.keys.stats)
        out: dict[str, list[int]] = {}
        for field, count in raw.items():
            name = field.decode() if isinstance(field, bytes) else field
            for index, suffix in enumerate((HITS_SUFFIX, MISSES_SUFFIX)):
                if name.endswith(suffix):
                    out.setdefault(name.removesuffix(suffix), [0, 0])[index] = int(count)
        return {name: (pair[0], pair[1]) for name, pair in out.items()}

    def close(self) -> None:
        self._values.close()
