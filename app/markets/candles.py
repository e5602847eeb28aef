"""Candles (OHLCV) of a market, for the ``candles`` query and subscription.

The matching worker keeps ``candles_1m`` (migration 0011) in the commit of the trades it is
built from; every interval here is aggregated from those minutes when asked for, in SQL.
What the rows cannot say is filled in here: an interval without trades is a candle of its
own, flat at the previous close, volume 0 and 0 trades; before a market's first trade there
is no candle at all (no price to show). Intervals start at UTC boundaries (a day at 00:00
UTC, 4 hours at 00:00, 04:00 …). See docs/adr/0013-candles.md.

:class:`LiveCandles` is the subscription's state: the open candle, updated by each trade
event of the market, rolled over to a new (empty) candle at the interval's end by a timer
on an injectable :class:`Clock`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import wire
from app.kit.pubsub import GAP, OVERFLOW, BoundedBroadcast
from app.kit.redis import Keys

ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)
"""Where interval boundaries are counted from (a UTC midnight), here and in SQL."""

MAX_CANDLES = 1000
"""The most candles one query may cover (and the largest ``first``)."""
DEFAULT_CANDLES = 100
"""How many candles a query without ``from`` or ``first`` answers: the most recent ones."""

_TICK = timedelta(microseconds=1)


class CandleInterval(Enum):
    M1 = "1m"
    M5 = "5m"
    M15 = "15m"
    H1 = "1h"
    H4 = "4h"
    D1 = "1d"

    @property
    def step(self) -> timedelta:
        return _STEPS[self]

    def floor(self, moment: datetime) -> datetime:
        """The start of the interval holding ``moment``."""
        return ORIGIN + (moment - ORIGIN) // self.step * self.step


_STEPS = {
    CandleInterval.M1: timedelta(minutes=1),
    CandleInterval.M5: timedelta(minutes=5),
    CandleInterval.M15: timedelta(minutes=15),
    CandleInterval.H1: timedelta(hours=1),
    CandleInterval.H4: timedelta(hours=4),
    CandleInterval.D1: timedelta(days=1),
}


@dataclass(frozen=True, slots=True)
class Candle:
    symbol: str
    interval: CandleInterval
    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    """Base asset traded."""
    quote_volume: Decimal
    """Quote asset traded: each trade's price × quantity cut to 8 decimals, summed."""
    trades: int
    last_trade_id: int
    """The last trade in this candle or before it (what a live candle has already seen)."""

    @property
    def end(self) -> datetime:
        return self.start + self.interval.step

    def flat(self, start: datetime) -> Candle:
        """The candle at ``start`` when no trade follows this one: flat at its close."""
        price = self.close
        return replace(
            self,
            start=start,
            open=price,
            high=price,
            low=price,
            volume=Decimal(0),
            quote_volume=Decimal(0),
            trades=0,
        )

    def with_trade(self, trade: wire.Trade) -> Candle:
        price = Decimal(trade.price)
        first = self.trades == 0
        return replace(
            self,
            open=price if first else self.open,
            high=price if first else max(self.high, price),
            low=price if first else min(self.low, price),
            close=price,
            volume=self.volume + Decimal(trade.quantity),
            quote_volume=self.quote_volume + Decimal(trade.quote_quantity),
            trades=self.trades + 1,
            last_trade_id=trade.id,
        )

    @classmethod
    def of_trade(cls, interval: CandleInterval, trade: wire.Trade) -> Candle:
        price = Decimal(trade.price)
        empty = cls(
            trade.symbol,
            interval,
            interval.floor(trade.executed_at),
            price,
            price,
            price,
            price,
            Decimal(0),
            Decimal(0),
            0,
            0,
        )
        return empty.with_trade(trade)


class CandleRequestError(Exception):
    """A ``candles`` request that cannot be answered: the message, and the argument."""

    def __init__(self, message: str, argument: str) -> None:
        super().__init__(message)
        self.argument = argument


@dataclass(frozen=True, slots=True)
class Window:
    """The candles a request covers: starts from ``start`` (aligned) up to before ``stop``."""

    start: datetime
    stop: datetime

    def count(self, interval: CandleInterval) -> int:
        return max(0, (self.stop - self.start) // interval.step)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def window(
    interval: CandleInterval,
    now: datetime,
    start: datetime | None = None,
    end: datetime | None = None,
    first: int | None = None,
) -> Window:
    """Which candles ``candles(interval, from: start, to: end, first)`` answers.

    - The candles are those that overlap ``[start, end)``: from the one holding ``start``
      to the last one that starts before ``end``. ``end`` defaults to now, and a later one
      is read as now: candles after the current (open) one do not exist yet.
    - Without ``start``: the ``first`` (default 100) most recent candles up to ``end``.
    - With ``start``: the range may hold at most 1000 candles; with ``first`` too, only its
      first ``first`` (the earliest: the next page starts at the last one's end).
    """
    if first is not None and not 1 <= first <= MAX_CANDLES:
        raise CandleRequestError(f"`first` must be between 1 and {MAX_CANDLES}", "first")
    try:
        return _window(interval, now, start, end, first)
    except OverflowError:  # counting back from a `to` in the first days of year 1
        raise CandleRequestError("`to` is too early", "to") from None


def _window(
    interval: CandleInterval,
    now: datetime,
    start: datetime | None,
    end: datetime | None,
    first: int | None,
) -> Window:
    now = _utc(now)
    if start is not None and end is not None and _utc(start) >= _utc(end):
        raise CandleRequestError("`from` must be before `to`", "from")
    step = interval.step
    stop = interval.floor(now) + step
    if end is not None and _utc(end) <= now:
        stop = interval.floor(_utc(end) - _TICK) + step
    if start is None:
        return Window(stop - (first or DEFAULT_CANDLES) * step, stop)
    begin = interval.floor(_utc(start))
    if begin >= stop:
        return Window(begin, begin)  # entirely in the future: nothing yet
    asked = Window(begin, stop)
    if asked.count(interval) > MAX_CANDLES:
        raise CandleRequestError(
            f"too many candles: that range holds {asked.count(interval)} {interval.value} "
            f"candles, at most {MAX_CANDLES} (narrow it, or use a longer interval)",
            "from",
        )
    if first is not None and asked.count(interval) > first:
        return Window(begin, begin + first * step)
    return asked


def fill(
    symbol: str,
    interval: CandleInterval,
    span: Window,
    rows: Sequence[Candle],
    previous: Candle | None,
) -> list[Candle]:
    """Every candle of ``span``: the aggregated ``rows`` (those with trades), and between
    them flat ones at the close before; none before the first trade (``previous`` is the
    last candle before the span, if there was a trade before it)."""
    by_start = {row.start: row for row in rows}
    candles: list[Candle] = []
    last = previous
    moment = span.start
    while moment < span.stop:
        row = by_start.get(moment)
        if row is not None:
            last = row
            candles.append(row)
        elif last is not None:
            candles.append(last.flat(moment))
        moment += interval.step
    return candles


_AGGREGATED = text(
    """
    SELECT date_bin(:step, bucket, :origin) AS start,
        (array_agg(open ORDER BY bucket))[1] AS open, max(high) AS high, min(low) AS low,
        (array_agg(close ORDER BY bucket DESC))[1] AS close, sum(volume) AS volume,
        sum(quote_volume) AS quote_volume, sum(trades)::int AS trades,
        max(last_trade_id) AS last_trade_id
    FROM candles_1m
    WHERE symbol = :symbol AND bucket >= :start AND bucket < :stop
    GROUP BY 1
    ORDER BY 1
    """
)
_PREVIOUS = text(
    """
    SELECT close, last_trade_id FROM candles_1m
    WHERE symbol = :symbol AND bucket < :start
    ORDER BY bucket DESC
    LIMIT 1
    """
)


async def aggregated(
    session: AsyncSession, symbol: str, interval: CandleInterval, span: Window
) -> tuple[list[Candle], Candle | None]:
    """The span's candles that had trades, and the last minute before the span (as a
    candle whose close is the previous close), from ``candles_1m``."""
    found = await session.execute(
        _AGGREGATED,
        {
            "step": interval.step,
            "origin": ORIGIN,
            "symbol": symbol,
            "start": span.start,
            "stop": span.stop,
        },
    )
    rows = [_candle(symbol, interval, row) for row in found.mappings()]
    before = (await session.execute(_PREVIOUS, {"symbol": symbol, "start": span.start})).first()
    previous = None
    if before is not None:
        close, last_trade_id = before
        zero = Decimal(0)
        previous = Candle(
            symbol, interval, span.start - interval.step, close, close, close, close, zero,
            zero, 0, last_trade_id,
        )  # fmt: skip
    return rows, previous


def _candle(symbol: str, interval: CandleInterval, row: Any) -> Candle:
    return Candle(
        symbol=symbol,
        interval=interval,
        start=row["start"],
        open=row["open"],
        high=row["high"],
        low=row["low"],
        close=row["close"],
        volume=row["volume"],
        quote_volume=row["quote_volume"],
        trades=row["trades"],
        last_trade_id=row["last_trade_id"],
    )


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep_until(self, moment: datetime) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, moment: datetime) -> None:
        # asyncio's clock is monotonic, not the wall clock: look again after waking (a
        # moment to wait for, not an event: hence the loop).
        while (left := (moment - self.now()).total_seconds()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(left)


class LiveCandles:
    """A live candle: the open one (``current``) and the one before it (``previous``),
    which a trade committed just before the boundary but heard just after still reaches.

    Each method returns the candles that changed, in the order to send them.
    """

    def __init__(
        self, interval: CandleInterval, previous: Candle | None, current: Candle | None
    ) -> None:
        self.interval = interval
        self.previous = previous
        self.current = current
        self.seen = max((c.last_trade_id for c in (previous, current) if c is not None), default=0)

    def trade(self, trade: wire.Trade) -> list[Candle]:
        if trade.id <= self.seen:
            return []  # already in the candles read from PostgreSQL
        self.seen = trade.id
        start = self.interval.floor(trade.executed_at)
        current = self.current
        if current is None or start > current.start:
            # The first trade ever, or one of the next interval before the timer said so.
            self.previous, self.current = current, Candle.of_trade(self.interval, trade)
            return [self.current]
        if start == current.start:
            self.current = current.with_trade(trade)
            return [self.current]
        previous = self.previous
        if previous is None or start != previous.start:
            return []  # older than the candle before: not live any more
        self.previous = previous.with_trade(trade)
        changed = [self.previous]
        if current.trades == 0:
            self.current = self.previous.flat(current.start)
            changed.append(self.current)
        return changed

    def roll(self, now: datetime) -> list[Candle]:
        """At the open candle's end, the next one starts empty, flat at its close."""
        current = self.current
        if current is None or now < current.end:
            return []
        self.previous, self.current = current, current.flat(self.interval.floor(now))
        return [self.current]


class CandleService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        keys: Keys,
        clock: Clock | None = None,
    ) -> None:
        self._sessions = sessions
        self._keys = keys
        self.clock: Clock = clock or SystemClock()

    async def candles(
        self,
        symbol: str,
        interval: CandleInterval,
        start: datetime | None = None,
        end: datetime | None = None,
        first: int | None = None,
    ) -> list[Candle]:
        """The candles of ``symbol`` (a market's symbol as stored), oldest first; raises
        :class:`CandleRequestError` for a request that cannot be answered (see :func:`window`)."""
        span = window(interval, self.clock.now(), start, end, first)
        if span.count(interval) == 0:
            return []
        async with self._sessions() as session:
            rows, previous = await aggregated(session, symbol, interval, span)
        return fill(symbol, interval, span, rows, previous)

    async def _live_state(self, symbol: str, interval: CandleInterval) -> LiveCandles:
        now = self.clock.now()
        current_start = interval.floor(now)
        span = Window(current_start - interval.step, current_start + interval.step)
        async with self._sessions() as session:
            rows, previous = await aggregated(session, symbol, interval, span)
        candles = fill(symbol, interval, span, rows, previous)
        current = candles[-1] if candles and candles[-1].start == current_start else None
        before = candles[0] if candles and candles[0].start < current_start else None
        return LiveCandles(interval, before, current)

    async def live(
        self, broadcast: BoundedBroadcast, symbol: str, interval: CandleInterval
    ) -> AsyncIterator[Candle]:
        """The open candle of ``symbol`` now, then again after each change: a trade of the
        market (from its trades channel), or the interval's end (a new, empty candle)."""
        async with broadcast.subscribe(self._keys.trades_channel(symbol)) as subscriber:
            # Subscribed first, then read: a trade in both is recognised by its id.
            state = await self._live_state(symbol, interval)
            if state.current is not None:
                yield state.current
            messages = aiter(subscriber)
            message: asyncio.Future[Any] | None = None
            timer: asyncio.Future[None] | None = None
            timer_end: datetime | None = None
            try:
                while True:
                    if message is None:
                        message = asyncio.ensure_future(anext(messages))
                    end = None if state.current is None else state.current.end
                    if end != timer_end:
                        if timer is not None:
                            timer.cancel()
                        timer_end = end
                        timer = (
                            None
                            if end is None
                            else asyncio.ensure_future(self.clock.sleep_until(end))
                        )
                    waiting = {message} if timer is None else {message, timer}
                    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                    if timer is not None and timer.done():
                        timer.result()
                        timer, timer_end = None, None
                        for candle in state.roll(self.clock.now()):
                            yield candle
                    if not message.done():
                        continue
                    try:
                        event = message.result()
                    except StopAsyncIteration:
                        return  # the broadcast is closing (the process is stopping)
                    message = None
                    if event.message in (GAP, OVERFLOW):
                        # Trades may have been missed: read the candles again.
                        state = await self._live_state(symbol, interval)
                        if state.current is not None:
                            yield state.current
                        continue
                    for trade in wire.decode_trades_event(event.message).trades:
                        for candle in state.trade(trade):
                            yield candle
            finally:
                pending = [task for task in (message, timer) if task is not None]
                for task in pending:
                    task.cancel()
                # Their own cancellations are results here; one of this task is raised.
                await asyncio.gather(*pending, return_exceptions=True)
