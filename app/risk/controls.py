"""Admins' risk controls, applied by the matching worker (the engine enforces them):
market limits and circuit breakers, trading suspensions, position limits."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import wire
from app.kit.bus import CommandBus
from app.kit.commands import INVALID_INPUT, dispatch
from app.kit.errors import Problem


@dataclass(frozen=True, slots=True)
class MarketLimitsRow:
    symbol: str
    max_order_quantity: Decimal | None
    max_order_notional: Decimal | None
    price_band_pct: Decimal | None
    breaker_move_pct: Decimal | None
    breaker_window_seconds: int
    breaker_cooldown_seconds: int
    halted_until: object | None


@dataclass(frozen=True, slots=True)
class PositionLimitRow:
    user_id: int | None
    asset: str
    max_position: Decimal | None


_LIMITS = text(
    "SELECT symbol, max_order_quantity, max_order_notional, price_band_pct, breaker_move_pct, "
    "breaker_window_seconds, breaker_cooldown_seconds, halted_until FROM markets "
    "WHERE symbol = :symbol"
)


class RiskControls:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], bus: CommandBus, *, timeout: float
    ) -> None:
        self._db = sessions
        self._bus = bus
        self._timeout = timeout

    async def market_limits(self, symbol: str) -> MarketLimitsRow | None:
        async with self._db() as session:
            row = (await session.execute(_LIMITS, {"symbol": symbol.upper()})).first()
        return None if row is None else MarketLimitsRow(*row)

    async def set_market_limits(self, command: wire.SetMarketLimits) -> MarketLimitsRow | Problem:
        reply = await dispatch(self._bus, command, timeout=self._timeout)
        if isinstance(reply, Problem):
            return reply
        row = await self.market_limits(command.symbol)
        if row is None:
            return Problem(INVALID_INPUT, f"no market {command.symbol!r}", "symbol")
        return row

    async def set_suspension(self, user_id: int, suspended: bool, reason: str) -> Problem | None:
        command = wire.SetTradingSuspension(user_id=user_id, suspended=suspended, reason=reason)
        reply = await dispatch(self._bus, command, timeout=self._timeout)
        return reply if isinstance(reply, Problem) else None

    async def set_position_limit(
        self, user_id: int | None, asset: str, max_position: str | None
    ) -> Problem | None:
        command = wire.SetPositionLimit(user_id=user_id, asset=asset, max_position=max_position)
        reply = await dispatch(self._bus, command, timeout=self._timeout)
        return reply if isinstance(reply, Problem) else None

    async def position_limits(self, user_id: int | None) -> list[PositionLimitRow]:
        """The defaults, and the user's overrides if a user is named."""
        async with self._db() as session:
            rows = (
                await session.execute(
                    text(
                        "SELECT user_id, asset, max_position FROM position_limits "
                        "WHERE (user_id IS NULL OR user_id = :user) AND max_position IS NOT NULL "
                        "ORDER BY asset, user_id NULLS FIRST"
                    ),
                    {"user": user_id or 0},
                )
            ).all()
        return [PositionLimitRow(*row) for row in rows]

    async def suspension(self, user_id: int) -> tuple[bool, str | None]:
        async with self._db() as session:
            row = (
                await session.execute(
                    text("SELECT trading_suspended, suspension_reason FROM users WHERE id = :id"),
                    {"id": user_id},
                )
            ).first()
        return (False, None) if row is None else (bool(row[0]), row[1])
