"""Subscriptions survive a Redis restart: a Redis of this test's own (``RedisServer``,
append-only), the real worker and API on it, orderBook and trades subscriptions open;
Redis is killed and started again on the same port and data."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from gql.transport.websockets import WebsocketsTransport

from app.config import Settings
from app.kit import migrate
from app.kit.bus import CommandBus
from app.kit.db import plain_url
from app.kit.redis import Keys, create_redis
from tests.support import exchange
from tests.support.live import Watch
from tests.support.processes import Platform, RedisServer, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    handle = RedisServer(tmp_path / "redis")
    handle.start()
    try:
        yield handle
    finally:
        if handle.proc and handle.proc.poll() is None:
            handle.kill()


async def test_orderbook_and_trades_subscriptions_resync_after_redis_restarts(
    settings: Settings, scratch_database: str, own_redis: RedisServer, tmp_path: Path
) -> None:
    await asyncio.to_thread(migrate.upgrade, scratch_database)
    mine = settings.model_copy(
        update={
            "database_url": scratch_database,
            "redis_url": own_redis.url,
            "worker_metrics_port": free_port(),
        }
    )
    platform = Platform(settings=mine, log_dir=tmp_path)
    redis = create_redis(own_redis.url)
    bus = CommandBus(redis, Keys(mine.redis_prefix))
    try:
        platform.start_worker()
        platform.start_api()
        conn = await asyncpg.connect(plain_url(scratch_database))
        try:
            seller = await exchange.create_user(conn)
            buyer = await exchange.create_user(conn)
        finally:
            await conn.close()
        await exchange.deposit(bus, seller, "BTC", "1")
        await exchange.deposit(bus, buyer, "USDT", "100000")
        await exchange.place(bus, seller, "BTC-USDT", "SELL", "0.1", "30000")

        legacy, transport = (
            WebsocketsTransport.APOLLO_SUBPROTOCOL,
            WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL,
        )
        book = Watch(
            platform,
            'subscription { orderBook(symbol: "BTC-USDT") { type sequence asks { price } } }',
            None,
            legacy,
        ).start()
        trades = Watch(
            platform,
            'subscription { trades(symbol: "BTC-USDT") { price quantity } }',
            None,
            transport,
        ).start()
        first = (await book.wait_for(1))[0]["orderBook"]
        assert first["type"] == "SNAPSHOT"
        assert first["asks"] == [{"price": "30000"}]
        await asyncio.sleep(0.5)  # the trades subscription is listening too

        own_redis.kill()
        await asyncio.sleep(1.5)  # down for a while: the API's reads fail meanwhile
        own_redis.start()

        # The book subscription resyncs by itself: a RESYNC, same book (append-only).
        items = await book.wait_for(2, seconds=20)
        again = items[1]["orderBook"]
        assert again["type"] == "RESYNC"
        assert again["asks"] == [{"price": "30000"}]
        assert again["sequence"] == first["sequence"]

        # The worker reconnects, or exits and is restarted as its supervisor would.
        await bus.close()
        await redis.aclose()
        redis = create_redis(own_redis.url)
        bus = CommandBus(redis, Keys(mine.redis_prefix))
        if platform.procs["worker"].poll() is not None:
            platform.procs.pop("worker")
            platform.start_worker()
        reply = await exchange.place(bus, buyer, "BTC-USDT", "BUY", "0.1", "30000")
        assert reply["ok"], reply

        traded = await trades.wait_for(1, seconds=20)
        assert traded == [{"trades": {"price": "30000", "quantity": "0.1"}}]
        after = await book.wait_for(3, seconds=20)
        assert after[2]["orderBook"]["type"] == "DELTA"
        assert after[2]["orderBook"]["sequence"] == first["sequence"] + 1
        await book.stop()  # raises what a subscription raised: no error reached them
        await trades.stop()
    finally:
        await bus.close()
        await redis.aclose()
        platform.stop()
