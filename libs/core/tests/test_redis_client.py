"""The one Redis client against Redis dying: through real Sentinels it finds the primary and
follows a failover; a worker's client rides out a restart; the gateway's does not wait."""

import asyncio
import os
import signal
import uuid

import pytest
import redis as sync_redis
from redis.exceptions import TimeoutError as RedisTimeoutError

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


def test_a_workers_command_rides_out_a_redis_restart(own_redis_server) -> None:
    """What a job writes while Redis restarts is written once Redis is back, not failed."""
    settings = CoreSettings(redis_url=own_redis_server.url)

    async def scenario() -> None:
        redis = create_redis(settings, ride_out=True)
        try:
            await redis.set("before", "1")
            own_redis_server.kill()
            write = asyncio.create_task(redis.set("during", "2"))
            await asyncio.sleep(1.5)
            assert not write.done(), "the command gave up while Redis was down"
            await asyncio.to_thread(own_redis_server.start)
            await asyncio.wait_for(write, 20)
            assert own_redis_server.client().get("during") == b"2"
        finally:
            await redis.aclose()

    asyncio.run(scenario())


def test_the_gateways_client_does_not_wait_for_a_dead_redis(own_redis_server) -> None:
    async def scenario() -> None:
        redis = create_redis(CoreSettings(redis_url=own_redis_server.url))
        try:
            await redis.ping()
            own_redis_server.kill()
            with pytest.raises(REDIS_ERRORS):
                await asyncio.wait_for(redis.set("during", "2"), 1)
        finally:
            await redis.aclose()

    asyncio.run(scenario())


def test_a_pooled_connection_redis_closed_is_replaced_before_a_command(redis_server) -> None:
    """The gateway's client does not retry: a connection Redis dropped while it sat in the
    pool (an idle timeout, CLIENT KILL, a restart) is found out before a command is sent on
    it."""

    async def scenario() -> None:
        redis = create_redis(CoreSettings(redis_url=redis_server.url))
        try:
            pooled = await redis.client_id()
            assert redis_server.client().client_kill_filter(_id=pooled) == 1
            await asyncio.sleep(0.2)  # the close reaches the pooled connection's stream
            assert await redis.client_id() != pooled
        finally:
            await redis.aclose()

    asyncio.run(scenario())


def test_a_pooled_connection_with_an_unread_answer_is_not_handed_out_as_it_is(
    redis_url: str,
) -> None:
    """An answer nobody read must never be taken for the next command's."""

    async def scenario() -> None:
        redis = create_redis(CoreSettings(redis_url=redis_url))
        try:
            await redis.set("key", "value")
            pool = redis.connection_pool
            connection = await pool.get_connection("GET")
            await connection.send_command("GET", "key")  # its answer left unread
            await asyncio.sleep(0.2)  # and received
            await pool.release(connection)
            assert await redis.incr("counter") == 1
            assert await redis.get("key") == b"value"
        finally:
            await redis.aclose()

    asyncio.run(scenario())


def test_a_write_redis_does_not_take_fails_at_the_socket_timeout(own_redis_server) -> None:
    """A Redis that stops reading (frozen, here) fails a write at the socket timeout, as a
    Redis TimeoutError, and the connection it was on is not used again."""

    async def scenario() -> None:
        redis = create_redis(CoreSettings(redis_url=own_redis_server.url))
        try:
            await redis.ping()
            os.kill(own_redis_server.process.pid, signal.SIGSTOP)
            try:
                with pytest.raises(RedisTimeoutError, match="writing"):
                    # More than the kernel buffers for a frozen reader: the write must wait.
                    await asyncio.wait_for(redis.set("big", b"x" * 256 * 2**20), 10)
            finally:
                os.kill(own_redis_server.process.pid, signal.SIGCONT)
            assert await redis.set("after", "1")
            assert own_redis_server.client().get("after") == b"1"
        finally:
            await redis.aclose()

    asyncio.run(scenario())


def test_sentinels_with_a_password_of_their_own() -> None:
    cluster = RedisSentinelCluster(sentinel_password="s3nt1nel").start()
    try:
        addresses = {"redis_sentinels": cluster.sentinels, "redis_master_name": cluster.MASTER_NAME}

        async def write(settings: CoreSettings) -> None:
            redis = create_redis(settings)
            try:
                await redis.set("through", "sentinels")
            finally:
                await redis.aclose()

        with pytest.raises(REDIS_ERRORS):  # without the password the Sentinels refuse to answer
            asyncio.run(write(CoreSettings(**addresses)))
        asyncio.run(write(CoreSettings(**addresses, redis_sentinel_password="s3nt1nel")))
        assert cluster.current_primary().client().get("through") == b"sentinels"
    finally:
        cluster.close()
