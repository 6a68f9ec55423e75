"""Long polls on a real Redis: a waiting request is woken by its channel's message, by nothing
else, and never waits while nobody listens."""

import asyncio
import time

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError

from esteira_api.changes import WAITED_SCOPE_KEY, Changes
from esteira_core import keys

pytestmark = pytest.mark.integration

CHANNEL = keys.scrape_task_events("a" * 32)
OTHER_CHANNEL = keys.scrape_task_events("b" * 32)


async def _listening(redis_url: str) -> tuple[Redis, Changes, asyncio.Task[None]]:
    # A socket timeout shorter than the quiet spells: listening must outlive them.
    redis = Redis.from_url(redis_url, socket_timeout=0.2)
    changes = Changes(redis)
    listener = asyncio.create_task(changes.listen())
    while not changes.listening:
        await asyncio.sleep(0.01)
    return redis, changes, listener


def test_a_long_poll_answers_at_its_channels_message_and_ignores_others(redis_url) -> None:
    async def scenario() -> tuple[list[int], float, dict]:
        redis, changes, listener = await _listening(redis_url)
        reads: list[int] = []

        async def read() -> int:
            reads.append(len(reads))
            return len(reads)

        async def publish_later() -> None:
            await asyncio.sleep(0.3)
            await redis.publish(OTHER_CHANNEL, "not for us")
            await asyncio.sleep(0.3)
            await redis.publish(CHANNEL, "changed")

        await asyncio.sleep(0.5)  # quiet for longer than the socket timeout
        assert changes.listening
        scope: dict = {}
        started = time.perf_counter()
        publisher = asyncio.create_task(publish_later())
        answer = await changes.answer(scope, CHANNEL, 20, read, lambda found: found > 1)
        elapsed = time.perf_counter() - started
        await publisher
        listener.cancel()
        await redis.aclose()
        return [answer, *reads], elapsed, scope

    (answer, *reads), elapsed, scope = asyncio.run(scenario())
    assert answer == 2 and reads == [0, 1]  # read, nothing new, woken, read again
    assert 0.5 < elapsed < 10  # after our channel's message, not the other one's
    assert 0.5 < scope[WAITED_SCOPE_KEY] < 10


def test_news_answers_at_once_and_silence_ends_with_the_wait(redis_url) -> None:
    async def scenario() -> tuple[float, dict, float, dict]:
        redis, changes, listener = await _listening(redis_url)

        async def read() -> str:
            return "state"

        news: dict = {}
        started = time.perf_counter()
        await changes.answer(news, CHANNEL, 20, read, lambda _found: True)
        at_once = time.perf_counter() - started
        silence: dict = {}
        started = time.perf_counter()
        await changes.answer(silence, CHANNEL, 0.5, read, lambda _found: False)
        waited = time.perf_counter() - started
        listener.cancel()
        await redis.aclose()
        return at_once, news, waited, silence

    at_once, news, waited, silence = asyncio.run(scenario())
    assert at_once < 0.5 and WAITED_SCOPE_KEY not in news
    assert 0.5 <= waited < 5 and silence[WAITED_SCOPE_KEY] >= 0.5


def test_nobody_waits_while_the_listener_has_no_redis() -> None:
    async def scenario() -> tuple[float, dict]:
        redis = Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)
        changes = Changes(redis)
        listener = asyncio.create_task(changes.listen())
        await asyncio.sleep(0.3)
        scope: dict = {}
        started = time.perf_counter()

        async def read() -> str:
            return "state"

        reads = 0

        async def counted() -> int:
            nonlocal reads
            reads += 1
            return reads

        await changes.answer(scope, CHANNEL, 20, read, lambda _found: False)
        elapsed = time.perf_counter() - started
        kept = [await changes.latest(CHANNEL, counted) for _ in range(2)]
        listener.cancel()
        return elapsed, scope, kept

    elapsed, scope, kept = asyncio.run(scenario())
    assert elapsed < 1 and WAITED_SCOPE_KEY not in scope
    assert kept == [1, 2]  # nothing is kept: no message would say it changed


def test_the_followers_a_change_wakes_share_one_read_until_the_next_change(redis_url) -> None:
    followers = 50

    async def scenario() -> tuple[list[int], int]:
        redis, changes, listener = await _listening(redis_url)
        state = {"version": 0}
        reads = 0

        async def read() -> int:
            nonlocal reads
            reads += 1
            await asyncio.sleep(0.05)
            return state["version"]

        waiting = [
            asyncio.create_task(
                changes.answer(
                    {}, CHANNEL, 20, lambda: changes.latest(CHANNEL, read), lambda v: v > 0
                )
            )
            for _ in range(followers)
        ]
        await asyncio.sleep(0.2)  # every follower has read once and waits
        state["version"] = 1
        await redis.publish(CHANNEL, "changed")
        answers = await asyncio.gather(*waiting)
        listener.cancel()
        await redis.aclose()
        return answers, reads

    answers, reads = asyncio.run(scenario())
    assert answers == [1] * followers
    assert reads == 2  # one before the change for all of them, one after it


def test_a_request_that_leaves_a_shared_read_takes_nothing_from_the_others(redis_url) -> None:
    async def scenario() -> tuple[list[int], int, list[int], int]:
        redis, changes, listener = await _listening(redis_url)
        reads = 0

        async def read() -> int:
            nonlocal reads
            reads += 1
            await asyncio.sleep(0.2)
            return 7

        async def share(leaving: int) -> tuple[list[int], int]:
            nonlocal reads
            reads = 0
            asking = [asyncio.create_task(changes.latest(CHANNEL, read)) for _ in range(4)]
            await asyncio.sleep(0.05)  # the first reads; the others wait for its answer
            asking[leaving].cancel()
            stayed = [t for i, t in enumerate(asking) if i != leaving]
            return list(await asyncio.gather(*stayed)), reads

        joiner_left = await share(leaving=2)
        await redis.publish(CHANNEL, "changed")  # what was kept is dropped
        await asyncio.sleep(0.1)
        reader_left = await share(leaving=0)
        listener.cancel()
        await redis.aclose()
        return *joiner_left, *reader_left

    answers, reads, answers_after, reads_after = asyncio.run(scenario())
    assert answers == [7, 7, 7] and reads == 1  # a joiner left: the read went on
    # The one reading left: the three others read for themselves, and still answer.
    assert answers_after == [7, 7, 7] and reads_after == 4


def test_a_kept_read_ends_at_its_channels_message_its_age_limit_or_its_failure(
    redis_url, monkeypatch
) -> None:
    monkeypatch.setattr("esteira_api.changes.KEPT_SECONDS", 0.3)

    async def scenario() -> list[object]:
        redis, changes, listener = await _listening(redis_url)
        reads: list[str] = []
        failing = {"now": False}

        async def read() -> int:
            reads.append("read")
            if failing["now"]:
                raise ConnectionError("Redis went away")
            return len(reads)

        seen = [await changes.latest(CHANNEL, read), await changes.latest(CHANNEL, read)]
        await redis.publish(OTHER_CHANNEL, "not this one")
        await asyncio.sleep(0.1)
        seen.append(await changes.latest(CHANNEL, read))  # kept: another channel's message
        await redis.publish(CHANNEL, "changed")
        await asyncio.sleep(0.1)
        seen.append(await changes.latest(CHANNEL, read))  # read anew after its own
        await asyncio.sleep(0.4)
        seen.append(await changes.latest(CHANNEL, read))  # and after KEPT_SECONDS
        await redis.publish(CHANNEL, "changed")
        await asyncio.sleep(0.1)
        failing["now"] = True
        try:
            await changes.latest(CHANNEL, read)
        except ConnectionError:
            seen.append("failed")
        failing["now"] = False
        seen.append(await changes.latest(CHANNEL, read))  # a failure is not kept
        listener.cancel()
        await redis.aclose()
        return seen

    assert asyncio.run(scenario()) == [1, 1, 1, 2, 3, "failed", 5]


def test_a_listener_its_client_reconnects_unseen_forgets_what_it_kept_and_wakes_its_waiters(
    redis_url, monkeypatch
) -> None:
    # Kept far longer than the test: only the reconnection may drop it.
    monkeypatch.setattr("esteira_api.changes.KEPT_SECONDS", 600)

    async def scenario() -> tuple[list[int], bool]:
        # As Sentinel's client is made: a connection error is retried once, on a new
        # connection, and the pub/sub subscribes again there without raising anything.
        retried = {"retry": Retry(NoBackoff(), 1), "retry_on_error": [ConnectionError]}
        redis = Redis.from_url(redis_url, socket_timeout=0.2, **retried)
        changes = Changes(redis)
        listener = asyncio.create_task(changes.listen())
        while not changes.listening:
            await asyncio.sleep(0.01)
        reads = 0

        async def read() -> int:
            nonlocal reads
            reads += 1
            return reads

        seen = [await changes.latest(CHANNEL, read), await changes.latest(CHANNEL, read)]
        waiter = asyncio.create_task(changes.answer({}, CHANNEL, 20, read, lambda _found: False))
        await asyncio.sleep(0.1)
        admin = Redis.from_url(redis_url)
        await admin.client_kill_filter(_type="pubsub")  # what a failover does to it
        await admin.aclose()
        for _ in range(100):  # whatever was published meanwhile went unseen
            if waiter.done() and await changes.latest(CHANNEL, read) != seen[0]:
                break
            await asyncio.sleep(0.05)
        seen.append(await changes.latest(CHANNEL, read))
        woken = waiter.done()
        listener.cancel()
        await redis.aclose()
        return seen, woken

    seen, woken = asyncio.run(scenario())
    assert seen[:2] == [1, 1] and seen[2] > 1  # read anew, though no message came
    assert woken  # the long poll answered at once, well before its 20 s
