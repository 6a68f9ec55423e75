"""The one Redis client, through real Sentinels: it finds the primary, and follows a failover."""

import asyncio
import uuid

import redis as sync_redis

from esteira_core.redis import REDIS_ERRORS, create_redis
from esteira_core.settings import CoreSettings
from esteira_testing.components import RedisSentinelCluster, RedisServer


def database(server: RedisServer, db: int) -> sync_redis.Redis:
    return sync_redis.Redis(host="127.0.0.1", port=server.port, db=db, socket_timeout=2)


def test_the_client_follows_the_primary_across_a_failover(
    redis_sentinel_cluster: RedisSentinelCluster,
) -> None:
    cluster = redis_sentinel_cluster
    settings = CoreSettings(
        redis_url="redis://unused:1/2",
        redis_sentinels=cluster.sentinels,
        redis_master_name=cluster.MASTER_NAME,
    )

    async def scenario() -> None:
        redis = create_redis(settings)
        try:
            await redis.set("before", "1")
            first = cluster.current_primary()
            assert database(first, 2).get("before") == b"1"  # the primary, the URL's database
            await redis.execute_command("WAIT", 1, 2000)  # and the replica has it
            dead = cluster.kill_primary()
            assert dead is first
            promoted = cluster.wait_for_promotion(dead.port)
            # The pooled connection to the dead primary fails once, then the client asks the
            # Sentinels again; a few failures while they agree are what a caller sees at most.
            key = uuid.uuid4().hex
            for _ in range(50):
                try:
                    await redis.set(key, "after")
                    break
                except REDIS_ERRORS:
                    await asyncio.sleep(0.1)
            assert await redis.get("before") == b"1"
            assert database(promoted, 2).get(key) == b"after"
        finally:
            await redis.aclose()

    asyncio.run(scenario())
