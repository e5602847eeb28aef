"""What the API needs to know about markets."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.markets import repository
from app.markets.models import Market


class MarketService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def list(self) -> Sequence[Market]:
        async with self._sessions() as session:
            return await repository.list_markets(session)

    async def get(self, symbol: str) -> Market | None:
        async with self._sessions() as session:
            return await repository.get_market(session, symbol.upper())
