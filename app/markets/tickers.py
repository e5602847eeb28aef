"""24-hour tickers: a market's last price, change, range and volumes, and its top of book.

The window is rolling and half-open: a trade counts when ``now - 24 h < executed_at <= now``
(one exactly 24 h old has just left it; one at ``now`` is in). ``now`` comes from the
service's clock, which tests replace. Every figure of every asked market comes from **one**
SQL statement (:func:`app.markets.repository.ticker_stats`), whatever the number of markets,
plus one Redis round trip for the best bid and ask (the worker's book cache, as
``orderBook`` reads it).

- ``last_price``: the latest trade at or before ``now``, in the window or not (``None``
  if the market never traded).
- ``open_price``: the price 24 h ago, i.e. of the latest trade at or before the window's
  start; for a market whose first trade is inside the window, that first trade's price.
- ``change = last_price - open_price`` and ``change_percent = change / open_price × 100``,
  rounded half away from zero to 2 decimals; both signed.
- No trade in the window: ``high``/``low`` are ``None``, volumes 0, ``trade_count`` 0, and
  (if the market traded before) change 0 — the price has not moved. A market that never
  traded has no last price, open price or change at all (``None``).

:class:`TickerFeed` serves the ``ticker`` subscription: one task per symbol a process has
subscribers for, woken by the symbol's trades and book changes, updating the ticker at
most once per ``interval`` (100 ms, counted from the end of the previous update) and
handing it to every subscriber, each of which only ever holds the latest one. After a
trade the ticker is computed again (one SQL statement); after a book change only the top
of the book is read, and a new best bid or ask replaces the last ticker's quotes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import wire
from app.kit.pubsub import BoundedBroadcast, when_redis_answers
from app.kit.redis import Keys
from app.markets import repository

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=24)
PERCENT = Decimal("0.01")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Quote:
    """The best price on one side of the book and the quantity resting there."""

    price: Decimal
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class Ticker:
    symbol: str
    window_start: datetime
    window_end: datetime
    last_price: Decimal | None
    open_price: Decimal | None
    high: Decimal | None
    low: Decimal | None
    base_volume: Decimal
    quote_volume: Decimal
    trade_count: int
    best_bid: Quote | None
    best_ask: Quote | None

    @property
    def change(self) -> Decimal | None:
        if self.last_price is None or self.open_price is None:
            return None
        return self.last_price - self.open_price

    @property
    def change_percent(self) -> Decimal | None:
        change = self.change
        if change is None or self.open_price is None:
            return None
        percent = (change * 100 / self.open_price).quantize(PERCENT, ROUND_HALF_UP)
        return percent if percent else Decimal(0)  # never "-0"

    def same_figures(self, other: Ticker | None) -> bool:
        """Equal but for the window (which moves with the clock alone)."""
        return (
            other is not None
            and replace(other, window_start=self.window_start, window_end=self.window_end) == self
        )


def _quote(members: list[str | bytes]) -> Quote | None:
    if not members:
        return None
    level = wire.decode_book_level(members[0])
    return Quote(Decimal(level.price), Decimal(level.quantity))


class TickerService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        redis: Redis,
        keys: Keys,
        *,
        clock: Clock = utc_now,
    ) -> None:
        self._sessions = sessions
        self._redis = redis
        self._keys = keys
        self.clock = clock

    def now(self) -> datetime:
        now = self.clock()
        if now.tzinfo is None:
            raise ValueError("the ticker clock must return an aware datetime")
        return now

    async def top_of_book(self, symbols: Sequence[str]) -> dict[str, tuple[Quote | None, ...]]:
        """``(best bid, best ask)`` of each symbol, in one Redis round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for symbol in symbols:
                pipe.zrevrange(self._keys.order_book(symbol, "bids"), 0, 0)
                pipe.zrange(self._keys.order_book(symbol, "asks"), 0, 0)
            answers = await pipe.execute()
        return {
            symbol: (_quote(answers[2 * i]), _quote(answers[2 * i + 1]))
            for i, symbol in enumerate(symbols)
        }

    async def tickers(self, symbols: Sequence[str]) -> list[Ticker]:
        """The tickers of ``symbols`` (stored spelling; unknown ones are left out), by
        symbol: one SQL statement and one Redis round trip for all of them."""
        end = self.now()
        start = end - WINDOW
        async with self._sessions() as session:
            rows = await repository.ticker_stats(session, symbols, start, end)
        tops = await self.top_of_book([row.symbol for row in rows])
        return [
            Ticker(
                symbol=row.symbol,
                window_start=start,
                window_end=end,
                last_price=row.last_price,
                open_price=row.open_price,
                high=row.high,
                low=row.low,
                base_volume=row.base_volume,
                quote_volume=row.quote_volume,
                trade_count=row.trade_count,
                best_bid=tops[row.symbol][0],
                best_ask=tops[row.symbol][1],
            )
            for row in rows
        ]

    async def ticker(self, symbol: str) -> Ticker | None:
        found = await self.tickers([symbol])
        return found[0] if found else None


@dataclass(eq=False)
class _Subscriber:
    """Holds only the latest ticker not yet read: a slow reader skips, never queues."""

    latest: asyncio.Queue[Ticker] = field(default_factory=lambda: asyncio.Queue(1))
    sent: Ticker | None = None

    def offer(self, ticker: Ticker) -> None:
        if ticker.same_figures(self.sent):
            return
        self.sent = ticker
        if self.latest.full():
            self.latest.get_nowait()
        self.latest.put_nowait(ticker)

    def __aiter__(self) -> _Subscriber:
        return self

    async def __anext__(self) -> Ticker:
        # Not a generator: a reader that stops waiting (a timeout) can wait again.
        return await self.latest.get()


@dataclass(eq=False)
class _SymbolFeed:
    task: asyncio.Task[None] | None = None
    subscribers: set[_Subscriber] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    traded: bool = True
    """A trade (or a new subscriber, or a lost message) since the last ticker: recompute.
    Otherwise only the book moved, and the ticker is recomputed only if its top did."""
    last: Ticker | None = None
    """The latest ticker computed."""


class TickerFeed:
    """Per-process live tickers: at most one computation per symbol per ``interval``."""

    def __init__(
        self,
        service: TickerService,
        broadcast: BoundedBroadcast,
        keys: Keys,
        *,
        interval: float = 0.1,
    ) -> None:
        self._service = service
        self._broadcast = broadcast
        self._keys = keys
        self.interval = interval
        self._feeds: dict[str, _SymbolFeed] = {}
        self.computed = 0
        """How many tickers the feed computed (each one SQL statement)."""

    @contextlib.asynccontextmanager
    async def subscribe(self, symbol: str) -> AsyncIterator[AsyncIterator[Ticker]]:
        """The tickers of ``symbol`` (stored spelling) as they change, starting with the
        current one."""
        feed = self._feeds.setdefault(symbol, _SymbolFeed())
        subscriber = _Subscriber()
        feed.subscribers.add(subscriber)
        feed.traded = True  # the newcomer needs a whole ticker
        feed.wake.set()
        if feed.task is None or feed.task.done():
            feed.task = asyncio.create_task(self._run(symbol, feed), name=f"ticker:{symbol}")
        try:
            yield subscriber
        finally:
            feed.subscribers.discard(subscriber)
            if not feed.subscribers:
                self._feeds.pop(symbol, None)
                if feed.task is not None:
                    feed.task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await feed.task

    async def close(self) -> None:
        for feed in list(self._feeds.values()):
            if feed.task is not None:
                feed.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feed.task
        self._feeds.clear()

    async def _listen(
        self, channel: str, feed: _SymbolFeed, ready: asyncio.Event, *, trades: bool
    ) -> None:
        try:
            async with self._broadcast.subscribe(channel) as events:
                ready.set()
                async for _ in events:
                    # Any message on the trades channel (a GAP or OVERFLOW marker too: a
                    # trade may have been missed) means recompute; the book's mean "look at
                    # the top".
                    if trades:
                        feed.traded = True
                    feed.wake.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the ticker feed stopped following %s", channel)
            raise

    async def _run(self, symbol: str, feed: _SymbolFeed) -> None:
        channels = {self._keys.trades_channel(symbol): True, self._keys.book_channel(symbol): False}
        ready = {channel: asyncio.Event() for channel in channels}
        listeners = [
            asyncio.create_task(self._listen(channel, feed, ready[channel], trades=trades))
            for channel, trades in channels.items()
        ]
        loop = asyncio.get_running_loop()
        last = -self.interval
        try:
            # Listen first, then compute: no trade can fall between the first ticker and
            # the messages.
            for event in ready.values():
                await event.wait()
            while True:
                await feed.wake.wait()
                pause = last + self.interval - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)  # coalesce: what arrives meanwhile joins in
                feed.wake.clear()
                try:
                    await self._update(symbol, feed)
                    # From the end of the update: sends stay >= interval apart however
                    # long a computation takes.
                    last = loop.time()
                except asyncio.CancelledError:
                    raise
                except Exception:  # PostgreSQL away: try again at the next wake-up
                    log.exception("could not compute the %s ticker", symbol)
                    feed.traded = True
                    feed.wake.set()
                    last = loop.time() + 1.0 - self.interval  # not faster than 1/s then
        finally:
            for listener in listeners:
                listener.cancel()
            # A listener that failed has logged why; its exception must not mask this one.
            await asyncio.gather(*listeners, return_exceptions=True)

    async def _update(self, symbol: str, feed: _SymbolFeed) -> None:
        if not feed.traded and feed.last is not None:
            # Only the book moved: a new top changes the ticker's quotes, nothing else (no
            # SQL); a change behind the top changes nothing.
            bid, ask = (await when_redis_answers(lambda: self._service.top_of_book([symbol])))[
                symbol
            ]
            if (bid, ask) == (feed.last.best_bid, feed.last.best_ask):
                return
            ticker: Ticker | None = replace(feed.last, best_bid=bid, best_ask=ask)
        else:
            feed.traded = False
            ticker = await when_redis_answers(lambda: self._service.ticker(symbol))
            self.computed += 1
        if ticker is None:
            return
        feed.last = ticker
        for subscriber in list(feed.subscribers):
            subscriber.offer(ticker)
