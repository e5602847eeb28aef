"""What the API needs to know about markets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import wire
from app.kit.bus import CommandBus
from app.kit.commands import dispatch
from app.kit.errors import Problem
from app.kit.redis import Keys
from app.markets import repository
from app.markets.models import Market
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
    ) -> None:
        self._sessions = sessions
        self._redis = redis
        self._keys = keys
        self._bus = bus
        self._timeout = timeout

    async def set_halted(self, symbol: str, halted: bool, reason: str = "") -> list[Problem]:
        """Halt or resume a market through the worker (which owns the book)."""
        if await self.get(symbol) is None:
            return [Problem(errors.INVALID_INPUT, f"no market {symbol!r}", "symbol")]
        command: wire.Halt | wire.Resume = (
            wire.Halt(symbol=symbol.upper(), reason=reason)
            if halted
            else wire.Resume(symbol=symbol.upper())
        )
        reply = await dispatch(self._bus, command, timeout=self._timeout)
        return [reply] if isinstance(reply, Problem) else []

    async def order_book(self, symbol: str, depth: int) -> BookSnapshot:
        """Read the worker's book cache: both sides and the sequence in one MULTI."""
        symbol = symbol.upper()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrevrange(self._keys.order_book(symbol, "bids"), 0, depth - 1)
            pipe.zrange(self._keys.order_book(symbol, "asks"), 0, depth - 1)
            pipe.get(self._keys.book_sequence(symbol))
            bids, asks, sequence = await pipe.execute()
        return BookSnapshot(symbol, int(sequence or 0), _levels(bids), _levels(asks))

    async def list(self) -> Sequence[Market]:
        async with self._sessions() as session:
            return await repository.list_markets(session)

    async def get(self, symbol: str) -> Market | None:
        async with self._sessions() as session:
            return await repository.get_market(session, symbol.upper())
