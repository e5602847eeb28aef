"""The 24 h ticker on the real PostgreSQL and Redis, with the clock in the tests' hands.

The clock is set in 2001: the trades other tests make (at the real time) are after it, so
they are neither in the window nor the last price, and the synthetic trades here
(tests/support/trades.py) are all the ticker sees. The book cache is read under a key
prefix of these tests' own, so no worker's book is touched.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
from redis.asyncio import Redis
from sqlalchemy import event

from app import wire
from app.config import Settings
from app.kit.db import plain_url
from app.kit.pubsub import BoundedBroadcast, ResilientRedisBackend
from app.kit.redis import Keys, create_redis
from app.markets.tickers import Quote, Ticker, TickerFeed, TickerService
from app.services import Services
from tests.support.live import listening
from tests.support.trades import SyntheticTrade, SyntheticTrades, synthetic_trades

NOW = datetime(2001, 1, 2, tzinfo=UTC)
DAY = timedelta(hours=24)
US = timedelta(microseconds=1)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(plain_url(settings.database_url or ""))
    yield conn
    await conn.close()


@pytest.fixture
async def trades(db: asyncpg.Connection) -> AsyncIterator[SyntheticTrades]:
    async with synthetic_trades(db) as handle:
        yield handle


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = create_redis(settings.redis_url or "")
    yield client
    await client.aclose()


@pytest.fixture
async def keys(settings: Settings, redis: Redis) -> AsyncIterator[Keys]:
    """Key names of these tests' own: a book cache and channels no worker writes."""
    handle = Keys(f"{settings.redis_prefix}tickers-{uuid.uuid4().hex[:8]}:")
    yield handle
    stale = [key async for key in redis.scan_iter(match=f"{handle.prefix}*")]
    if stale:
        await redis.delete(*stale)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def tickers(services: Services, redis: Redis, keys: Keys, clock: Clock) -> TickerService:
    return TickerService(services.sessions, redis, keys, clock=clock)


async def rest(redis: Redis, keys: Keys, symbol: str, side: str, price: str, qty: str) -> None:
    member = wire.encode(wire.BookLevel(price=price, quantity=qty, orders=1))
    await redis.zadd(keys.order_book(symbol, side), {member: float(price)})


A_DAY = [
    SyntheticTrade(NOW - DAY - timedelta(hours=1), "90", "1"),  # before the window
    SyntheticTrade(NOW - DAY, "95", "3"),  # exactly 24 h old: out, but the price 24 h ago
    SyntheticTrade(NOW - DAY + US, "100", "1"),  # the window's first trade
    SyntheticTrade(NOW - timedelta(hours=12), "120", "0.5"),
    SyntheticTrade(NOW - timedelta(hours=6), "80", "2", "SELL"),
    SyntheticTrade(NOW, "110", "0.25"),  # exactly now: in
    SyntheticTrade(NOW + US, "999", "7"),  # the future: not yet
]


def figures(ticker: Ticker | None) -> dict[str, object]:
    assert ticker is not None
    return {
        "last": ticker.last_price,
        "open": ticker.open_price,
        "change": ticker.change,
        "percent": ticker.change_percent,
        "high": ticker.high,
        "low": ticker.low,
        "base": ticker.base_volume,
        "quote": ticker.quote_volume,
        "count": ticker.trade_count,
    }


async def test_a_day_of_trades_with_the_window_exactly_24_hours(
    tickers: TickerService, trades: SyntheticTrades, clock: Clock
) -> None:
    await trades.add("BTC-USDT", *A_DAY)

    ticker = await tickers.ticker("BTC-USDT")
    assert figures(ticker) == {
        "last": Decimal("110"),
        "open": Decimal("95"),
        "change": Decimal("15"),
        "percent": Decimal("15.79"),  # 15 / 95 = 15.789...%
        "high": Decimal("120"),
        "low": Decimal("80"),
        "base": Decimal("3.75"),
        "quote": Decimal("347.5"),  # 100 + 60 + 160 + 27.5
        "count": 4,
    }
    assert ticker is not None
    assert (ticker.window_start, ticker.window_end) == (NOW - DAY, NOW)

    # One microsecond later the first trade is exactly 24 h old (out, and now the price
    # 24 h ago), and the future one is now (in).
    clock.now = NOW + US
    assert figures(await tickers.ticker("BTC-USDT")) == {
        "last": Decimal("999"),
        "open": Decimal("100"),
        "change": Decimal("899"),
        "percent": Decimal("899.00"),
        "high": Decimal("999"),
        "low": Decimal("80"),
        "base": Decimal("9.75"),
        "quote": Decimal("7240.5"),
        "count": 4,
    }


async def test_a_fall_is_negative_and_open_is_the_first_trade_without_an_earlier_one(
    tickers: TickerService, trades: SyntheticTrades
) -> None:
    await trades.add(
        "ETH-USDT",
        SyntheticTrade(NOW - timedelta(hours=20), "2000", "0.1"),
        SyntheticTrade(NOW - timedelta(hours=10), "2100", "0.1"),
        SyntheticTrade(NOW - timedelta(hours=1), "1899.99", "0.3333"),
    )
    assert figures(await tickers.ticker("ETH-USDT")) == {
        "last": Decimal("1899.99"),
        "open": Decimal("2000"),
        "change": Decimal("-100.01"),
        "percent": Decimal("-5.00"),  # -5.0005 rounds half away from zero to -5.00
        "high": Decimal("2100"),
        "low": Decimal("1899.99"),
        "base": Decimal("0.5333"),
        # 200 + 210 + 633.266667 (1899.99 x 0.3333 = 633.266667, exact at 8 decimals)
        "quote": Decimal("1043.266667"),
        "count": 3,
    }


async def test_quote_volume_rounds_each_trade_down_to_1e_8_as_fills_do(
    tickers: TickerService, trades: SyntheticTrades
) -> None:
    # 0.33333333 x 0.03 = 0.0099999999 -> 0.00999999 per trade (the engine's quote quantity)
    await trades.add(
        "ETH-USDT",
        SyntheticTrade(NOW - timedelta(hours=2), "0.03", "0.33333333"),
        SyntheticTrade(NOW - timedelta(hours=1), "0.03", "0.33333333"),
    )
    ticker = await tickers.ticker("ETH-USDT")
    assert ticker is not None
    assert ticker.quote_volume == Decimal("0.01999998")


async def test_no_trade_in_the_window_and_a_market_that_never_traded(
    tickers: TickerService, trades: SyntheticTrades, clock: Clock
) -> None:
    await trades.add("BTC-USDT", *A_DAY)
    # Two days on: nothing in the window; the last price stands and has not moved.
    clock.now = NOW + 2 * DAY
    assert figures(await tickers.ticker("BTC-USDT")) == {
        "last": Decimal("999"),
        "open": Decimal("999"),
        "change": Decimal("0"),
        "percent": Decimal("0"),
        "high": None,
        "low": None,
        "base": Decimal("0"),
        "quote": Decimal("0"),
        "count": 0,
    }
    # Before the first trade ever: no price at all.
    clock.now = NOW - 3 * DAY
    assert figures(await tickers.ticker("BTC-USDT")) == {
        "last": None,
        "open": None,
        "change": None,
        "percent": None,
        "high": None,
        "low": None,
        "base": Decimal("0"),
        "quote": Decimal("0"),
        "count": 0,
    }


async def test_best_bid_and_ask_come_from_the_book_cache(
    tickers: TickerService, redis: Redis, keys: Keys
) -> None:
    assert await tickers.top_of_book(["BTC-USDT"]) == {"BTC-USDT": (None, None)}
    await rest(redis, keys, "BTC-USDT", "bids", "29000", "0.5")
    await rest(redis, keys, "BTC-USDT", "bids", "29500.5", "0.25")
    await rest(redis, keys, "BTC-USDT", "asks", "30000", "1.5")
    await rest(redis, keys, "BTC-USDT", "asks", "31000", "2")
    ticker = await tickers.ticker("BTC-USDT")
    assert ticker is not None
    assert (ticker.best_bid, ticker.best_ask) == (
        Quote(Decimal("29500.5"), Decimal("0.25")),
        Quote(Decimal("30000"), Decimal("1.5")),
    )


async def test_tickers_is_one_sql_statement_for_every_market(
    services: Services, tickers: TickerService, trades: SyntheticTrades
) -> None:
    await trades.add("BTC-USDT", *A_DAY)
    await trades.add("ETH-USDT", SyntheticTrade(NOW - timedelta(hours=3), "2000", "1"))
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(services.db.sync_engine, "before_cursor_execute", count)
    try:
        found = await tickers.tickers(["BTC-USDT", "ETH-USDT", "DOGE-USDT"])
    finally:
        event.remove(services.db.sync_engine, "before_cursor_execute", count)
    assert len(statements) == 1, statements
    assert [(t.symbol, t.trade_count, t.last_price) for t in found] == [
        ("BTC-USDT", 4, Decimal("110")),
        ("ETH-USDT", 1, Decimal("2000")),
    ]


def test_the_clock_must_be_aware(services: Services, keys: Keys) -> None:
    service = TickerService(services.sessions, None, keys, clock=lambda: datetime(2001, 1, 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="aware"):
        service.now()


@pytest.fixture
async def feed(settings: Settings, tickers: TickerService, keys: Keys) -> AsyncIterator[TickerFeed]:
    url = settings.redis_url or ""
    broadcast = BoundedBroadcast(ResilientRedisBackend(lambda: Redis.from_url(url)))
    await broadcast.connect()
    handle = TickerFeed(tickers, broadcast, keys)
    yield handle
    await handle.close()
    await broadcast.disconnect()


async def next_ticker(stream: AsyncIterator[Ticker], seconds: float = 5.0) -> Ticker:
    async with asyncio.timeout(seconds):
        return await anext(stream)


async def test_the_feed_coalesces_a_burst_of_trades_to_one_ticker_per_100_ms(
    feed: TickerFeed, trades: SyntheticTrades, redis: Redis, keys: Keys
) -> None:
    channel = keys.trades_channel("BTC-USDT")
    loop = asyncio.get_running_loop()
    async with feed.subscribe("BTC-USDT") as stream:
        first = await next_ticker(stream)
        assert first.trade_count == 0
        await listening(redis, channel)
        await listening(redis, keys.book_channel("BTC-USDT"))
        computed = feed.computed
        received: list[tuple[float, Ticker]] = []

        done = asyncio.Event()

        async def read() -> None:
            async for ticker in stream:
                received.append((loop.time(), ticker))
                if ticker.trade_count == 30:
                    done.set()

        reader = asyncio.create_task(read())
        started = loop.time()
        for n in range(30):  # 30 trades over ~0.3 s
            await trades.add("BTC-USDT", SyntheticTrade(NOW - timedelta(minutes=n + 1), "100", "1"))
            await redis.publish(channel, "a trade")
            await asyncio.sleep(0.01)
        async with asyncio.timeout(5):
            await done.wait()
        reader.cancel()
    times = [at for at, _ in received]
    assert all(later - earlier >= 0.09 for earlier, later in itertools.pairwise(times)), times
    most = int((times[-1] - started) / 0.1) + 2
    assert len(received) <= most < 30, [t.trade_count for _, t in received]
    assert feed.computed - computed <= most
    assert [t.trade_count for _, t in received] == sorted(t.trade_count for _, t in received)


async def test_the_feed_pushes_a_new_top_of_book_but_not_a_deeper_change(
    feed: TickerFeed, redis: Redis, keys: Keys
) -> None:
    channel = keys.book_channel("ETH-USDT")
    async with feed.subscribe("ETH-USDT") as stream:
        first = await next_ticker(stream)
        assert (first.best_bid, first.best_ask) == (None, None)
        await listening(redis, channel)
        await rest(redis, keys, "ETH-USDT", "bids", "1990", "2")
        await redis.publish(channel, "a delta")
        moved = await next_ticker(stream)
        assert moved.best_bid == Quote(Decimal("1990"), Decimal("2"))
        # A bid behind the best: the ticker is the same, nothing is sent.
        await rest(redis, keys, "ETH-USDT", "bids", "1980", "1")
        await redis.publish(channel, "a deeper delta")
        with pytest.raises(TimeoutError):
            await next_ticker(stream, seconds=0.4)
        await rest(redis, keys, "ETH-USDT", "asks", "2010", "0.5")
        await redis.publish(channel, "a delta")
        assert (await next_ticker(stream)).best_ask == Quote(Decimal("2010"), Decimal("0.5"))
