"""The API's market cache: loaded once, kept current by the worker's status messages,
reloaded when its subscription was lost (a message may have been missed meanwhile)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import pytest
from redis.asyncio import Redis

from app.kit.bus import CommandBus
from app.kit.redis import Keys, create_redis
from app.markets.cache import MarketCache
from app.markets.service import MarketService
from app.services import Services

pytestmark = pytest.mark.e2e


@pytest.fixture
async def redis(services: Services) -> AsyncIterator[Redis]:
    client = create_redis(services.settings.redis_url or "")
    yield client
    await client.aclose()


@pytest.fixture
async def cache(services: Services) -> AsyncIterator[MarketCache]:
    """A cache of its own, on a connection named so that a test can kill it."""
    name = f"test-cache-{uuid.uuid4().hex[:8]}"
    url = services.settings.redis_url or ""
    handle = MarketCache(
        services.sessions,
        lambda: Redis.from_url(url, client_name=name),
        Keys(services.settings.redis_prefix).markets_channel(),
    )
    handle.name = name  # type: ignore[attr-defined]
    await handle.start()
    assert handle.live
    yield handle
    await handle.close()


async def halt(bus: CommandBus, symbol: str) -> None:
    reply = await bus.submit("halt", {"symbol": symbol, "reason": "cache test"})
    assert reply["ok"], reply


async def resume(bus: CommandBus, symbol: str) -> None:
    reply = await bus.submit("resume", {"symbol": symbol})
    assert reply["ok"], reply


async def until(cache: MarketCache, condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        await cache.wait_until(condition)


def halted(cache: MarketCache, symbol: str) -> bool:
    market = cache.get(symbol)
    assert market is not None
    return market.halted


async def test_the_cache_follows_halts_and_resumes(cache: MarketCache, bus: CommandBus) -> None:
    market = cache.get("ETH-USDT")
    assert market is not None and market.status == "TRADING"
    assert (market.tick_size, market.lot_size, market.min_notional, market.quote_asset) == (
        Decimal("0.01"),
        Decimal("0.0001"),
        Decimal("5"),
        "USDT",
    )
    await halt(bus, "ETH-USDT")
    try:
        await until(cache, lambda: halted(cache, "ETH-USDT"))
        assert cache.get("ETH-USDT").halt_reason == "cache test"  # type: ignore[union-attr]
    finally:
        await resume(bus, "ETH-USDT")
    await until(cache, lambda: not halted(cache, "ETH-USDT"))
    assert cache.get("ETH-USDT").halt_reason is None  # type: ignore[union-attr]
    assert cache.loads == 1  # followed, never reloaded


async def test_a_change_made_while_not_subscribed_is_loaded_on_resubscribing(
    cache: MarketCache, bus: CommandBus, services: Services
) -> None:
    await cache.close()  # as if the subscription were down: the message below is missed
    assert not cache.live
    markets = MarketService(
        services.sessions, services.redis, services.keys, bus, timeout=5.0, cache=cache
    )
    await halt(bus, "ETH-USDT")
    try:
        # Not live: the service reads PostgreSQL rather than trust what the cache holds.
        assert not halted(cache, "ETH-USDT")
        assert (await markets.get("eth-usdt")).status == "HALTED"  # type: ignore[union-attr]
        await cache.start()
        assert (cache.loads, halted(cache, "ETH-USDT")) == (2, True)
        assert cache.live
    finally:
        await resume(bus, "ETH-USDT")


async def test_a_lost_connection_is_followed_by_a_reload(
    cache: MarketCache, bus: CommandBus, redis: Redis
) -> None:
    killed = 0
    for client in await redis.client_list():
        if client.get("name") == cache.name:  # type: ignore[attr-defined]
            killed += await redis.client_kill_filter(_id=client["id"])
    assert killed == 1
    await halt(bus, "ETH-USDT")  # perhaps while the cache is away, perhaps not
    try:
        await until(cache, lambda: cache.loads == 2 and cache.live)
        await until(cache, lambda: halted(cache, "ETH-USDT"))
    finally:
        await resume(bus, "ETH-USDT")
