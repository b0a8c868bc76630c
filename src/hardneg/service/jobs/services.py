"""The Redis-backed objects the API, the workers and the runner share, built from Settings."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from rq import Queue

from hardneg.core.workspace import Workspace
from hardneg.service.cache import RedisCache
from hardneg.service.jobs.connection import bytes_client, text_client
from hardneg.service.jobs.corpora import CorpusStore
from hardneg.service.jobs.keys import Keys
from hardneg.service.jobs.queue import make_queue
from hardneg.service.jobs.store import JobStore
from hardneg.service.settings import Settings


@dataclass(frozen=True)
class Services:
    settings: Settings
    keys: Keys
    text: redis.Redis  # decoded replies: records
    raw: redis.Redis  # bytes: RQ and the cache
    jobs: JobStore
    corpora: CorpusStore
    cache: RedisCache
    queue: Queue

    @property
    def workspace(self) -> Workspace:
        return Workspace(self.settings.home)

    @classmethod
    def connect(cls, settings: Settings, patient: bool = False) -> Services:
        """Build clients (lazily connected: nothing is sent to Redis here).

        ``patient``: retry commands through a Redis restart (workers and job runs).
        """
        keys = Keys(settings.redis_prefix)
        text, raw = text_client(settings, patient), bytes_client(settings, patient=patient)
        values = (
            bytes_client(settings, settings.cache_redis_url, patient)
            if settings.cache_redis_url
            else raw
        )
        return cls(
            settings=settings,
            keys=keys,
            text=text,
            raw=raw,
            jobs=JobStore(text, keys),
            corpora=CorpusStore(text, keys),
            cache=RedisCache(
                values, raw, keys.namespace, settings.cache_ttl_seconds, settings.job_lease_seconds
            ),
            queue=make_queue(settings, raw),
        )

    def close(self) -> None:
        self.text.close()
        self.raw.close()
        self.cache.close()
