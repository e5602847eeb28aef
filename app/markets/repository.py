"""Every query about markets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.markets.models import Market


async def list_markets(session: AsyncSession) -> Sequence[Market]:
    result = await session.execute(select(Market).order_by(Market.symbol))
    return result.scalars().all()


async def get_market(session: AsyncSession, symbol: str) -> Market | None:
    return await session.get(Market, symbol)


@dataclass(frozen=True, slots=True)
class TickerStats:
    symbol: str
    last_price: Decimal | None
    open_price: Decimal | None
    high: Decimal | None
    low: Decimal | None
    base_volume: Decimal
    quote_volume: Decimal
    trade_count: int


# One statement for any number of markets: per market, three index probes on
# idx_trades_symbol_time (last trade, the price at the window's start, the first trade in
# the window) and one range scan of the window. The window is (start, end].
_TICKER_STATS = text(
    """
    SELECT m.symbol, last.price AS last_price,
           COALESCE(before.price, first.price) AS open_price,
           w.high, w.low, w.base_volume, w.quote_volume, w.trade_count
    FROM markets m
    LEFT JOIN LATERAL (
        SELECT t.price FROM trades t
        WHERE t.symbol = m.symbol AND t.executed_at <= :end
        ORDER BY t.executed_at DESC, t.id DESC LIMIT 1
    ) last ON true
    LEFT JOIN LATERAL (
        SELECT t.price FROM trades t
        WHERE t.symbol = m.symbol AND t.executed_at <= :start
        ORDER BY t.executed_at DESC, t.id DESC LIMIT 1
    ) before ON true
    LEFT JOIN LATERAL (
        SELECT t.price FROM trades t
        WHERE t.symbol = m.symbol AND t.executed_at > :start AND t.executed_at <= :end
        ORDER BY t.executed_at, t.id LIMIT 1
    ) first ON true
    CROSS JOIN LATERAL (
        SELECT max(t.price) AS high, min(t.price) AS low,
               COALESCE(sum(t.quantity), 0) AS base_volume,
               -- each trade's quote quantity as the engine computes it: rounded down to 1e-8
               COALESCE(sum(trunc(t.price * t.quantity, 8)), 0) AS quote_volume,
               count(*) AS trade_count
        FROM trades t
        WHERE t.symbol = m.symbol AND t.executed_at > :start AND t.executed_at <= :end
    ) w
    WHERE m.symbol IN :symbols
    ORDER BY m.symbol
    """
).bindparams(bindparam("symbols", expanding=True))


async def ticker_stats(
    session: AsyncSession, symbols: Sequence[str], start: datetime, end: datetime
) -> list[TickerStats]:
    """The 24 h figures of each of ``symbols`` that is a market, by symbol."""
    if not symbols:
        return []
    result = await session.execute(
        _TICKER_STATS, {"symbols": list(symbols), "start": start, "end": end}
    )
    return [TickerStats(**row._mapping) for row in result]
