"""Every API process's copy of the markets, so no order reads PostgreSQL for its market.

Markets change only through the matching worker (halt, resume; the rest is set by
migrations), and the worker publishes each change on the markets channel after its commit.
The cache subscribes first, then loads every market from PostgreSQL: a change committed
before the load is in it, one published after the subscription is applied on top (applying
a change twice is harmless, each message carries the market's whole status).

While the subscription is down (Redis restarting) a change could be missed: the cache is
then not *live*, :class:`~app.markets.service.MarketService` reads PostgreSQL instead,
and on reconnect the cache subscribes again and reloads. The worker stays authoritative
either way: it refuses an order on a halted market whatever an API process believed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

import msgspec
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import wire
from app.markets import repository
from app.markets.models import Market

log = logging.getLogger(__name__)

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


@dataclass(frozen=True, slots=True)
class MarketInfo:
    """What the API knows of a market: its grid and whether it trades."""

    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    lot_size: Decimal
    min_notional: Decimal
    status: str
    halt_reason: str | None = None

    @classmethod
    def from_row(cls, row: Market) -> MarketInfo:
        return cls(
            symbol=row.symbol,
            base_asset=row.base_asset,
            quote_asset=row.quote_asset,
            tick_size=row.tick_size,
            lot_size=row.lot_size,
            min_notional=row.min_notional,
            status=row.status,
            halt_reason=row.halt_reason,
        )

    @property
    def halted(self) -> bool:
        return self.status == "HALTED"


async def load_markets(sessions: async_sessionmaker[AsyncSession]) -> dict[str, MarketInfo]:
    async with sessions() as session:
        rows = await repository.list_markets(session)
    return {row.symbol: MarketInfo.from_row(row) for row in rows}


class MarketCache:
    """Markets by symbol, kept current by the worker's status messages."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        connect: Callable[[], Redis],
        channel: str,
    ) -> None:
        self._sessions = sessions
        self._connect = connect
        self._channel = channel
        self._markets: dict[str, MarketInfo] = {}
        self._live = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._update = asyncio.Event()
        self.loads = 0
        """How many times the markets were (re)loaded from PostgreSQL."""

    @property
    def live(self) -> bool:
        """Subscribed and loaded: what it holds is what the worker last committed."""
        return self._live.is_set()

    def get(self, symbol: str) -> MarketInfo | None:
        return self._markets.get(symbol)

    def all(self) -> Sequence[MarketInfo]:
        return [self._markets[symbol] for symbol in sorted(self._markets)]

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Return once ``condition()`` holds, checked after every change to the cache."""
        while not condition():
            await self._update.wait()

    def _changed(self) -> None:
        self._update.set()
        self._update = asyncio.Event()

    async def start(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Subscribe and load; returns once live (or after ``timeout``: until then, and
        whenever the subscription is down, the service reads PostgreSQL)."""
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="market-cache")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._live.wait(), timeout)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._live.clear()

    def put(self, market: MarketInfo) -> None:
        """``market`` as just committed (the process that sent the change knows first)."""
        if market.symbol in self._markets:
            self._markets[market.symbol] = market
            self._changed()

    def apply(self, data: str | bytes) -> None:
        """One :class:`~app.wire.MarketStatusChanged` message."""
        message = wire.decode_book_message(data)
        if not isinstance(message, wire.MarketStatusChanged):
            return
        market = self._markets.get(message.symbol)
        if market is None:  # a market created after the load: the next reload has it
            log.warning("status of unknown market %r; reloading", message.symbol)
            self._live.clear()
            return
        self._markets[market.symbol] = replace(
            market, status=message.status.value, halt_reason=message.reason
        )
        self._changed()

    async def _follow(self) -> None:
        backoff = 0.05
        while True:
            redis = self._connect()
            pubsub = redis.pubsub()
            try:
                # Once SUBSCRIBE's confirmation is read, nothing published later is missed:
                # only then is the load from PostgreSQL started.
                await pubsub.subscribe(self._channel)
                while True:
                    confirmation = await pubsub.get_message(timeout=1.0)
                    if confirmation is not None and confirmation["type"] == "subscribe":
                        break
                await self._reload()
                backoff = 0.05
                while self._live.is_set():
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        try:
                            self.apply(message["data"])
                        except (msgspec.DecodeError, ValueError):
                            log.exception("unreadable market status %r", message["data"])
                            self._live.clear()
            except REDIS_DOWN as exc:
                log.warning("market status channel lost (%s); resubscribing", exc)
            except Exception:  # a database error while reloading: try again
                log.exception("could not follow the markets; retrying")
            finally:
                self._live.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(Exception):
                    await redis.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _reload(self) -> None:
        self._markets = await load_markets(self._sessions)
        self.loads += 1
        self._live.set()
        self._changed()
