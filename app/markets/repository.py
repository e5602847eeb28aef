"""Every query about markets."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.markets.models import Market


async def list_markets(session: AsyncSession) -> Sequence[Market]:
    result = await session.execute(select(Market).order_by(Market.symbol))
    return result.scalars().all()


async def get_market(session: AsyncSession, symbol: str) -> Market | None:
    return await session.get(Market, symbol)
