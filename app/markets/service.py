"""What the API needs to know about markets.

Markets are read from the process's :class:`~app.markets.cache.MarketCache` (no
PostgreSQL on the trading path); only while the cache is not live (not started, or its
subscription down) are they read from PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import wire
from app.kit.bus import CommandBus
from app.kit.commands import dispatch
from app.kit.errors import Problem
from app.kit.redis import Keys
from app.markets import repository
from app.markets.cache import MarketCache, MarketInfo, load_markets
from app.orders import errors


@dataclass(frozen=True, slots=True)
class Level:
    price: Decimal
    quantity: Decimal
    orders: int


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """Aggregated price levels, best first, and the sequence of the last delta in them."""

    symbol: str
    sequence: int
    bids: list[Level]
    asks: list[Level]


def _levels(members: list[str]) -> list[Level]:
    levels = []
    for member in members:
        level = wire.decode_book_level(member)
        levels.append(Level(Decimal(level.price), Decimal(level.quantity), level.orders))
    return levels


class MarketService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        redis: Redis,
        keys: Keys,
        bus: CommandBus,
        *,
        timeout: float,
        cache: MarketCache | None = None,
    ) -> None:
        self._sessions = sessions
        self._redis = redis
        self._keys = keys
        self._bus = bus
        self._timeout = timeout
        self.cache = cache

    async def set_halted(
        self, symbol: str, halted: bool, reason: str = ""
    ) -> MarketInfo | list[Problem]:
        """Halt or resume a market through the worker (which owns the book); the market
        as committed, or why not."""
        market = await self.get(symbol)
        if market is None:
            return [Problem(errors.INVALID_INPUT, f"no market {symbol!r}", "symbol")]
        command: wire.Halt | wire.Resume = (
            wire.Halt(symbol=market.symbol, reason=reason)
            if halted
            else wire.Resume(symbol=market.symbol)
        )
        reply = await dispatch(self._bus, command, timeout=self._timeout)
        if isinstance(reply, Problem):
            return [reply]
        # Committed: this process knows it now, before the worker's message reaches it.
        changed = replace(
            market,
            status="HALTED" if halted else "TRADING",
            halt_reason=(reason or None) if halted else None,
        )
        if self.cache is not None:
            self.cache.put(changed)
        return changed

    async def order_book(self, symbol: str, depth: int) -> BookSnapshot:
        """Read the worker's book cache: both sides and the sequence in one MULTI (depth 0:
        every level)."""
        symbol = symbol.upper()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrevrange(self._keys.order_book(symbol, "bids"), 0, depth - 1)
            pipe.zrange(self._keys.order_book(symbol, "asks"), 0, depth - 1)
            pipe.get(self._keys.book_sequence(symbol))
            bids, asks, sequence = await pipe.execute()
        return BookSnapshot(symbol, int(sequence or 0), _levels(bids), _levels(asks))

    async def whole_book(self, symbol: str) -> BookSnapshot:
        """Every level of the book (what an API process's replica starts from)."""
        return await self.order_book(symbol, 0)

    async def list(self) -> Sequence[MarketInfo]:
        if self.cache is not None and self.cache.live:
            return self.cache.all()
        markets = await load_markets(self._sessions)
        return [markets[symbol] for symbol in sorted(markets)]

    async def get(self, symbol: str) -> MarketInfo | None:
        """The market of ``symbol`` (any case); from the cache while it is live."""
        symbol = symbol.upper()
        if self.cache is not None and self.cache.live:
            return self.cache.get(symbol)
        async with self._sessions() as session:
            row = await repository.get_market(session, symbol)
        return MarketInfo.from_row(row) if row is not None else None
