"""Candles from trades: exact OHLCV, empty intervals, boundaries, every interval, the
request window and its refusals, and a property test against a naive model.

The trades are written with the matching worker's own statement (trades and candles in one
statement, as a batch is), at chosen times, inside a transaction rolled back at the end;
each test's market is a symbol of its own, so nothing else's trades are in its candles.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest
from broadcaster import Event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker

from app.kit.db import create_engine
from app.kit.money import plain_text
from app.kit.pubsub import GAP
from app.kit.redis import Keys
from app.markets.candles import (
    Candle,
    CandleInterval,
    CandleRequestError,
    CandleService,
    LiveCandles,
)
from app.wire import Trade as WireTrade
from app.wire import TradesEvent, encode
from workers.matching.store import statement

M1, M5, M15, H1, H4, D1 = (
    CandleInterval.M1,
    CandleInterval.M5,
    CandleInterval.M15,
    CandleInterval.H1,
    CandleInterval.H4,
    CandleInterval.D1,
)
T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
"""A Monday, 10:00 UTC: a boundary of every interval."""

_ids = itertools.count(-(10**15))  # never an id the engine gives (its are positive)
_symbols = itertools.count(1)


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self.moment = now

    def now(self) -> datetime:
        return self.moment

    async def sleep_until(self, moment: datetime) -> None:  # pragma: no cover - unused
        raise AssertionError("a query never sleeps")


@dataclass(frozen=True)
class T:
    """A trade to record: when, at what price, how much."""

    at: datetime
    price: str
    quantity: str


@dataclass
class Market:
    symbol: str
    conn: AsyncConnection
    service: CandleService
    clock: FixedClock
    recorded: list[tuple[int, T]]

    async def trade(self, *trades: T) -> None:
        """Record ``trades`` as the worker would: each distinct time is one batch."""
        for at, group in itertools.groupby(trades, key=lambda t: t.at):
            rows = []
            for trade in group:
                trade_id = next(_ids)
                self.recorded.append((trade_id, trade))
                rows.append(
                    {
                        "id": trade_id,
                        "symbol": self.symbol,
                        "price": trade.price,
                        "quantity": trade.quantity,
                        "buyer_fee": "0",
                        "seller_fee": "0",
                        "taker_side": "BUY",
                        "executed_at": at.isoformat(),
                    }
                )
            raw: Any = (await self.conn.get_raw_connection()).driver_connection
            # The worker's statement as it runs it; inside the test's transaction (which
            # SQLAlchemy has begun: see the fixture), so it is rolled back with it.
            assert raw.is_in_transaction()
            await raw.fetch(statement(("new_trades",)), json.dumps(rows))

    async def candles(
        self,
        interval: CandleInterval,
        start: datetime | None = None,
        end: datetime | None = None,
        first: int | None = None,
    ) -> list[tuple[str, str, str, str, str, str, str, int]]:
        found = await self.service.candles(self.symbol, interval, start, end, first)
        return [shown(c) for c in found]


def shown(c: Candle) -> tuple[str, str, str, str, str, str, str, int]:
    return (
        c.start.astimezone(UTC).strftime("%m-%d %H:%M"),
        *(plain_text(v) for v in (c.open, c.high, c.low, c.close, c.volume, c.quote_volume)),
        c.trades,
    )  # type: ignore[return-value]


@pytest.fixture
async def connection(database_url: str) -> AsyncIterator[AsyncConnection]:
    engine = create_engine(database_url, pool_size=1)
    async with engine.connect() as conn:
        transaction = await conn.begin()
        await conn.execute(text("SELECT 1"))  # SQLAlchemy sends BEGIN with its first statement
        try:
            yield conn
        finally:
            await transaction.rollback()
    await engine.dispose()


def new_market(conn: AsyncConnection, now: datetime) -> Market:
    clock = FixedClock(now)
    sessions = async_sessionmaker(
        bind=conn, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )
    service = CandleService(sessions, keys=None, clock=clock)  # type: ignore[arg-type]
    return Market(f"C{next(_symbols)}-USDT", conn, service, clock, [])


@pytest.fixture
def market(connection: AsyncConnection) -> Market:
    return new_market(connection, T0 + timedelta(days=2))


def at(minutes: float = 0, *, hours: float = 0, days: float = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, hours=hours, days=days)


MICRO = timedelta(microseconds=1)


async def test_one_minute_candles_are_the_trades_exactly_with_flat_empty_minutes(
    market: Market,
) -> None:
    await market.trade(
        T(at(0), "100", "1"),  # on the boundary: the 10:00 candle's
        T(at(0), "101.5", "0.5"),  # same batch: the close is the later trade
        T(at(0.5), "99.25", "2"),
        T(at(1) - MICRO, "100.5", "0.1"),  # the last moment of 10:00
        T(at(1), "102", "0.3"),  # 10:01
        T(at(3) + timedelta(seconds=15), "98", "0.01"),  # nothing at 10:02
    )
    assert await market.candles(M1, at(-2), at(5)) == [
        # 09:58 and 09:59 are before the first trade: no candle
        ("01-05 10:00", "100", "101.5", "99.25", "100.5", "3.6", "359.3", 4),
        ("01-05 10:01", "102", "102", "102", "102", "0.3", "30.6", 1),
        ("01-05 10:02", "102", "102", "102", "102", "0", "0", 0),
        ("01-05 10:03", "98", "98", "98", "98", "0.01", "0.98", 1),
        ("01-05 10:04", "98", "98", "98", "98", "0", "0", 0),
    ]


async def test_longer_intervals_aggregate_the_minutes_at_their_utc_boundaries(
    market: Market,
) -> None:
    await market.trade(
        T(at(-1), "50", "1"),  # 09:59
        T(at(4) + timedelta(seconds=59), "60", "2"),  # 10:04:59 - last of the first 5m
        T(at(5), "55", "1"),  # 10:05: the second 5m
        T(at(14), "70", "1"),  # 10:14: still the first 15m
        T(at(15), "65", "1"),  # 10:15
        T(at(0, hours=4) - MICRO, "80", "1"),  # 13:59:59.999999: the 10:00-14:00 4h
        T(at(0, hours=14), "90", "1"),  # 00:00 the next day
    )
    assert await market.candles(M5, at(0), at(15)) == [
        ("01-05 10:00", "60", "60", "60", "60", "2", "120", 1),
        ("01-05 10:05", "55", "55", "55", "55", "1", "55", 1),
        ("01-05 10:10", "70", "70", "70", "70", "1", "70", 1),
    ]
    assert await market.candles(M15, at(-15), at(30)) == [
        ("01-05 09:45", "50", "50", "50", "50", "1", "50", 1),
        ("01-05 10:00", "60", "70", "55", "70", "4", "245", 3),
        ("01-05 10:15", "65", "65", "65", "65", "1", "65", 1),
    ]
    assert await market.candles(H1, at(-60), at(0, hours=4)) == [
        ("01-05 09:00", "50", "50", "50", "50", "1", "50", 1),
        ("01-05 10:00", "60", "70", "55", "65", "5", "310", 4),
        ("01-05 11:00", "65", "65", "65", "65", "0", "0", 0),
        ("01-05 12:00", "65", "65", "65", "65", "0", "0", 0),
        ("01-05 13:00", "80", "80", "80", "80", "1", "80", 1),
    ]
    assert await market.candles(H4, at(0, hours=-10), at(0, hours=18)) == [
        ("01-05 08:00", "50", "70", "50", "65", "6", "360", 5),
        ("01-05 12:00", "80", "80", "80", "80", "1", "80", 1),
        ("01-05 16:00", "80", "80", "80", "80", "0", "0", 0),
        ("01-05 20:00", "80", "80", "80", "80", "0", "0", 0),
        ("01-06 00:00", "90", "90", "90", "90", "1", "90", 1),
    ]
    assert await market.candles(D1, at(0, days=-2), at(0, days=2)) == [
        ("01-05 00:00", "50", "80", "50", "80", "7", "440", 6),
        ("01-06 00:00", "90", "90", "90", "90", "1", "90", 1),
        ("01-07 00:00", "90", "90", "90", "90", "0", "0", 0),
    ]


async def test_quote_volume_is_cut_to_8_decimals_per_trade_as_the_engine_does(
    market: Market,
) -> None:
    await market.trade(T(at(0), "0.33333333", "0.33333333"), T(at(0), "0.33333333", "0.3"))
    (candle,) = await market.candles(M1, at(0), at(1))
    # 0.1111111088888889 -> 0.11111110; 0.099999999 -> 0.09999999
    assert candle[6] == "0.21111109"


async def test_without_from_the_most_recent_candles_the_open_one_included(
    market: Market,
) -> None:
    await market.trade(T(at(0), "10", "1"), T(at(7), "11", "1"))
    market.clock.moment = at(9) + timedelta(seconds=30)  # 10:09:30, 10:09 open
    recent = await market.candles(M1, first=3)
    assert [c[0] for c in recent] == ["01-05 10:07", "01-05 10:08", "01-05 10:09"]
    assert recent[-1] == ("01-05 10:09", "11", "11", "11", "11", "0", "0", 0)
    assert len(await market.candles(M1)) == 10  # default 100, but none before 10:00
    # `to` in the middle of a minute includes that minute; in the future means now.
    assert [c[0] for c in await market.candles(M1, end=at(7.5), first=2)] == [
        "01-05 10:06",
        "01-05 10:07",
    ]
    assert [c[0] for c in await market.candles(M1, at(8), at(60))] == [
        "01-05 10:08",
        "01-05 10:09",
    ]
    # With `from`, `first` keeps the earliest (the next page starts at the last end).
    assert [c[0] for c in await market.candles(M1, at(1), at(9), first=2)] == [
        "01-05 10:01",
        "01-05 10:02",
    ]
    # `from` inside a candle includes that candle.
    assert [c[0] for c in await market.candles(M5, at(6), at(9))] == ["01-05 10:05"]
    assert await market.candles(M1, at(30)) == []  # in the future: nothing yet


async def test_a_market_without_trades_has_no_candles(market: Market) -> None:
    assert await market.candles(D1) == []
    assert await market.candles(M1, at(0), at(10)) == []


@pytest.mark.parametrize(
    ("interval", "start", "end", "first", "argument", "message"),
    [
        (M1, None, None, 0, "first", "`first` must be between 1 and 1000"),
        (M1, None, None, 1001, "first", "`first` must be between 1 and 1000"),
        (M1, at(5), at(5), None, "from", "`from` must be before `to`"),
        (D1, None, datetime(1, 1, 2, tzinfo=UTC), None, "to", "`to` is too early"),
        (M1, at(5), at(1), 10, "from", "`from` must be before `to`"),
        (
            M1,
            at(0),
            at(1001),
            None,
            "from",
            "too many candles: that range holds 1001 1m candles, at most 1000 "
            "(narrow it, or use a longer interval)",
        ),
        (
            H1,
            at(0, days=-42),
            None,
            5,
            "from",
            "too many candles: that range holds 1057 1h candles, at most 1000 "
            "(narrow it, or use a longer interval)",
        ),
    ],
)
async def test_requests_that_cannot_be_answered_are_refused_with_the_argument(
    market: Market,
    interval: CandleInterval,
    start: datetime | None,
    end: datetime | None,
    first: int | None,
    argument: str,
    message: str,
) -> None:
    with pytest.raises(CandleRequestError) as refused:
        await market.service.candles(market.symbol, interval, start, end, first)
    assert (refused.value.argument, str(refused.value)) == (argument, message)


async def test_exactly_1000_candles_and_naive_times_read_as_utc(market: Market) -> None:
    await market.trade(T(at(0), "1", "1"))
    found = await market.candles(M1, at(0), at(1000))
    assert len(found) == 1000
    naive = await market.candles(M1, at(0).replace(tzinfo=None), at(2).replace(tzinfo=None))
    assert [c[0] for c in naive] == ["01-05 10:00", "01-05 10:01"]


# -- the property: candles equal a naive model of the trades -----------------------------


def naive_candles(
    trades: Sequence[tuple[int, T]], interval: CandleInterval, starts: Sequence[datetime]
) -> list[tuple[str, str, str, str, str, str, str, int]]:
    """Each start's trades, read straight from the list; flat at the last close before."""
    expected = []
    for start in starts:
        inside = sorted(
            (i, t) for i, t in trades if start <= t.at < start + interval.step
        )  # by trade id
        before = sorted((i, t) for i, t in trades if t.at < start)
        if inside:
            prices = [Decimal(t.price) for _, t in inside]
            quantities = [Decimal(t.quantity) for _, t in inside]
            quote = sum(
                (
                    (p * q).quantize(Decimal("1e-8"), rounding=ROUND_DOWN)
                    for p, q in zip(prices, quantities, strict=True)
                ),
                Decimal(0),
            )
            row = (prices[0], max(prices), min(prices), prices[-1], sum(quantities), quote)
            count = len(inside)
        elif before:
            close = Decimal(before[-1][1].price)
            row = (close, close, close, close, Decimal(0), Decimal(0))
            count = 0
        else:
            continue
        expected.append(
            (
                start.strftime("%m-%d %H:%M"),
                *(plain_text(Decimal(v)) for v in row),
                count,
            )
        )
    return expected  # type: ignore[return-value]


PRICES = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999"), places=2)
QUANTITIES = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("50"), places=8)
TRADES = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=3 * 24 * 60 * 60 * 1000),  # ms within 3 days
        PRICES,
        QUANTITIES,
        st.integers(min_value=1, max_value=3),  # trades in that batch
    ),
    max_size=25,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    batches=TRADES,
    interval=st.sampled_from(list(CandleInterval)),
    offset_ms=st.integers(min_value=-60 * 60 * 1000, max_value=3 * 24 * 60 * 60 * 1000),
    count=st.integers(min_value=1, max_value=60),
)
async def test_candles_equal_a_naive_model_of_random_trades(
    connection: AsyncConnection,
    batches: list[tuple[int, Decimal, Decimal, int]],
    interval: CandleInterval,
    offset_ms: int,
    count: int,
) -> None:
    market = new_market(connection, T0 + timedelta(days=10))
    trades: list[T] = []
    for ms, price, quantity, repeat in sorted(batches, key=lambda b: b[0]):
        moment = T0 + timedelta(milliseconds=ms)
        trades.extend(T(moment, str(price), str(quantity)) for _ in range(repeat))
    await market.trade(*trades)
    start = interval.floor(T0 + timedelta(milliseconds=offset_ms))
    end = start + count * interval.step
    now = market.clock.now()
    # Candles after the open one (the one holding now) do not exist yet.
    starts = [start + n * interval.step for n in range(count)]
    starts = [s for s in starts if s <= interval.floor(now)]
    assert await market.candles(interval, start, end) == naive_candles(
        market.recorded, interval, starts
    )


# -- the live candle -----------------------------------------------------------------------


def wire_trade(trade_id: int, moment: datetime, price: str, quantity: str) -> WireTrade:
    quote = (Decimal(price) * Decimal(quantity)).quantize(Decimal("1e-8"), rounding=ROUND_DOWN)
    return WireTrade(
        id=trade_id,
        symbol="X-USDT",
        price=price,
        quantity=quantity,
        quote_quantity=str(quote),
        taker_side="BUY",  # type: ignore[arg-type]
        maker_order_id=1,
        taker_order_id=2,
        buyer_user_id=1,
        seller_user_id=2,
        buyer_order_id=1,
        seller_order_id=2,
        buyer_fee="0",
        seller_fee="0",
        executed_at=moment,
    )


def test_the_live_candle_updates_rolls_over_and_takes_a_late_trade() -> None:
    live = LiveCandles(M1, None, None)
    assert live.roll(at(5)) == []  # nothing traded yet: nothing to show
    (first,) = live.trade(wire_trade(10, at(0.5), "100", "1"))
    assert shown(first) == ("01-05 10:00", "100", "100", "100", "100", "1", "100", 1)
    (second,) = live.trade(wire_trade(11, at(0.6), "90", "2"))
    assert shown(second) == ("01-05 10:00", "100", "100", "90", "90", "3", "280", 2)
    assert live.trade(wire_trade(11, at(0.6), "90", "2")) == []  # seen already
    assert live.roll(at(1) - MICRO) == []
    (rolled,) = live.roll(at(1))
    assert shown(rolled) == ("01-05 10:01", "90", "90", "90", "90", "0", "0", 0)
    # Committed at 10:00:59.9 but heard after the roll: the 10:00 candle changes, and the
    # empty 10:01 one follows its close.
    late, flat = live.trade(wire_trade(12, at(1) - MICRO, "95", "1"))
    assert shown(late) == ("01-05 10:00", "100", "100", "90", "95", "4", "375", 3)
    assert shown(flat) == ("01-05 10:01", "95", "95", "95", "95", "0", "0", 0)
    (opened,) = live.trade(wire_trade(13, at(1.5), "96", "1"))
    assert shown(opened) == ("01-05 10:01", "96", "96", "96", "96", "1", "96", 1)
    # A trade of the next minute before the timer fired opens that minute at once.
    (next_minute,) = live.trade(wire_trade(14, at(2), "97", "1"))
    assert shown(next_minute) == ("01-05 10:02", "97", "97", "97", "97", "1", "97", 1)
    assert live.trade(wire_trade(15, at(0.9), "1", "1")) == []  # too old to be live
    # Slept through several minutes: the next candle is the one holding now.
    (later,) = live.roll(at(7.5))
    assert shown(later)[0] == "01-05 10:07"


STEPS = st.lists(
    st.tuples(
        st.booleans(),  # a trade (else the timer firing)
        st.integers(min_value=0, max_value=3 * 60 * 60 * 1000),  # ms after the step before
        PRICES,
        QUANTITIES,
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(steps=STEPS, interval=st.sampled_from(list(CandleInterval)))
def test_the_live_candle_is_always_the_naive_candle_of_now(
    steps: list[tuple[bool, int, Decimal, Decimal]], interval: CandleInterval
) -> None:
    """Trades heard in order, and the timer waking at any moment after: the open candle is
    the one the trades so far make for the interval holding now."""
    live = LiveCandles(interval, None, None)
    now = T0
    seen: list[tuple[int, T]] = []
    for number, (is_trade, later_ms, price, quantity) in enumerate(steps, 1):
        now += timedelta(milliseconds=later_ms)
        if is_trade:
            seen.append((number, T(now, str(price), str(quantity))))
            live.trade(wire_trade(number, now, str(price), str(quantity)))
        else:
            live.roll(now)
        current = [] if live.current is None else [shown(live.current)]
        assert current == naive_candles(seen, interval, [interval.floor(now)])


class StillClock(FixedClock):
    """A clock that does not move by itself: its timers wait until cancelled."""

    async def sleep_until(self, moment: datetime) -> None:
        await asyncio.Event().wait()


class FakeBroadcast:
    """The trades channel as a queue the test feeds (``None`` ends the subscription)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self.channels: list[str] = []

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[Event]]:
        self.channels.append(channel)

        async def events() -> AsyncIterator[Event]:
            while (event := await self.queue.get()) is not None:
                yield event

        yield events()


async def test_the_live_stream_dedupes_what_it_read_rereads_after_a_gap_and_ends_with_it(
    market: Market,
) -> None:
    await market.trade(T(at(0.5), "100", "1"), T(at(0.7), "101", "1"))
    market.service.clock = StillClock(at(0.8))
    keys = market.service._keys = Keys("t:")
    channel = keys.trades_channel(market.symbol)
    broadcast = FakeBroadcast()
    stream = market.service.live(broadcast, market.symbol, M1)  # type: ignore[arg-type]
    opened = await anext(stream)
    assert broadcast.channels == [channel]
    assert shown(opened) == ("01-05 10:00", "100", "101", "100", "101", "2", "201", 2)

    def heard(number: int) -> Event:
        """The worker's message for the ``number``-th trade recorded."""
        trade_id, t = market.recorded[number - 1]
        event = TradesEvent(
            symbol=market.symbol, trades=[wire_trade(trade_id, t.at, t.price, t.quantity)]
        )
        return Event(channel, encode(event).decode())

    # Published after the read but committed before it: already counted, not again.
    await broadcast.queue.put(heard(2))
    await market.trade(T(at(0.9), "99", "0.5"))
    await broadcast.queue.put(heard(3))
    updated = await anext(stream)
    assert shown(updated) == ("01-05 10:00", "100", "101", "99", "99", "2.5", "250.5", 3)
    # A lost connection (the 4th trade's message with it): read the candles again.
    await market.trade(T(at(0.95), "98", "1"))
    await broadcast.queue.put(Event(channel, GAP))
    reread = await anext(stream)
    assert shown(reread) == ("01-05 10:00", "100", "101", "98", "98", "3.5", "348.5", 4)
    await broadcast.queue.put(None)  # the broadcast closes: the stream ends, quietly
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
