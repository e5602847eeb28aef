"""The subscription plumbing on a real Redis: bounded queues and reconnection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from app.config import Settings
from app.kit.pubsub import GAP, OVERFLOW, BoundedBroadcast, ResilientRedisBackend, SlowConsumer
from tests.support.live import listening


@pytest.fixture
async def broadcast(settings: Settings) -> AsyncIterator[tuple[BoundedBroadcast, Redis, str]]:
    name = f"{settings.redis_prefix}pubsub-test-{uuid.uuid4().hex[:6]}"
    url = settings.redis_url or ""
    handle = BoundedBroadcast(
        ResilientRedisBackend(lambda: Redis.from_url(url, client_name=name)), max_queue=10
    )
    await handle.connect()
    publisher = Redis.from_url(url, decode_responses=True)
    yield handle, publisher, name
    await handle.disconnect()
    await publisher.aclose()


async def test_a_slow_subscriber_gets_a_bounded_queue_and_an_overflow_marker(
    broadcast: tuple[BoundedBroadcast, Redis, str], settings: Settings
) -> None:
    handle, publisher, _ = broadcast
    channel = f"{settings.redis_prefix}slow"
    async with handle.subscribe(channel) as subscriber:
        await listening(publisher, channel)
        for n in range(50):
            await publisher.publish(channel, str(n))
        await publisher.publish(channel, "last")
        received: list[str] = []
        async with asyncio.timeout(10):
            while not received or received[-1] != "last":
                event = await subscriber.get()
                assert event is not None
                received.append(event.message)
                if len(received) == 1:
                    assert subscriber._queue.qsize() <= handle.max_queue
    assert OVERFLOW in received
    assert len(received) <= handle.max_queue + 1
    assert received[-1] == "last"


async def test_a_slow_lossless_subscriber_gets_everything_queued_then_slow_consumer(
    broadcast: tuple[BoundedBroadcast, Redis, str], settings: Settings
) -> None:
    handle, publisher, _ = broadcast
    channel = f"{settings.redis_prefix}slow-lossless"
    async with handle.subscribe(channel, lossless=True) as subscriber:
        await listening(publisher, channel)
        for n in range(50):
            await publisher.publish(channel, str(n))
        await publisher.publish(channel, "last")
        received: list[str] = []
        with pytest.raises(SlowConsumer):
            async with asyncio.timeout(10):
                async for event in subscriber:
                    received.append(event.message)
        # Leaving while the listener still reads the burst: the unsubscribe must not fail.
    # The first max_queue messages, in order, and nothing after them.
    assert received == [str(n) for n in range(handle.max_queue)]


async def test_subscriptions_survive_a_lost_connection_and_are_told_of_the_gap(
    broadcast: tuple[BoundedBroadcast, Redis, str], settings: Settings
) -> None:
    handle, publisher, client_name = broadcast
    channel = f"{settings.redis_prefix}resilient"
    async with handle.subscribe(channel) as subscriber:
        await listening(publisher, channel)
        await publisher.publish(channel, "before")
        assert (await subscriber.get()).message == "before"  # type: ignore[union-attr]

        killed = 0
        for client in await publisher.client_list():
            if client.get("name") == client_name:
                killed += await publisher.client_kill_filter(_id=client["id"])
        assert killed >= 1

        async with asyncio.timeout(10):
            event = await subscriber.get()
        assert event is not None and event.message == GAP
        await listening(publisher, channel)
        await publisher.publish(channel, "after")
        async with asyncio.timeout(10):
            event = await subscriber.get()
        assert event is not None and event.message == "after"
