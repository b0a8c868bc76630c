"""The job status read, the API's hottest request, on an asyncio Redis client.

Clients poll ``GET /v1/jobs/{id}`` while jobs run, often many at once. Through the synchronous
store each poll takes two thread-pool hops (the endpoint, then its response) and two Redis round
trips, and while a job trains on the same machine every hop waits for a core. Here the record
and its lease are one pipelined round trip awaited on the event loop, so a poll never leaves it.
The keys and the record format are the job store's own (:class:`Keys`, :class:`JobRecord`).
"""

from __future__ import annotations

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from hardneg.service.jobs.keys import Keys
from hardneg.service.jobs.records import JobRecord
from hardneg.service.settings import Settings

RETRIES = 2  # a pooled connection a Redis restart closed is replaced without failing the poll
MAX_CONNECTIONS = 32  # one pipelined round trip per poll: a few connections serve hundreds
POOL_WAIT_SECONDS = 5.0


class JobReader:
    def __init__(self, settings: Settings) -> None:
        self.keys = Keys(settings.redis_prefix)
        # a bounded pool that waits for a free connection: a burst of polls queues for a few
        # connections instead of opening one each (or failing once a default cap is reached)
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=MAX_CONNECTIONS,
            timeout=POOL_WAIT_SECONDS,
            decode_responses=True,
            socket_connect_timeout=5,
            health_check_interval=30,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), RETRIES),
            retry_on_error=[RedisConnectionError],
        )
        self.client = redis.asyncio.Redis.from_pool(pool)

    async def get(self, job_id: str) -> tuple[JobRecord | None, int | None]:
        """(the job's record or None, the attempt holding its lease or None)."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.job(job_id))
            pipe.get(self.keys.lease(job_id))
            raw, lease = await pipe.execute()
        record = JobRecord.from_hash(raw) if raw else None
        return record, int(lease) if lease else None

    async def close(self) -> None:
        await self.client.aclose()
