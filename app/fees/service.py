"""What the API reads about fees: the tier table and a user's 30-day volume.

The tiers themselves are the matching worker's (it charges the fees and writes
``users.fee_tier``); the API never changes them except through its commands.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.fees import TIERS_SQL, USER_VOLUME_SQL, Tier


class FeeService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._db = sessions

    async def schedule(self) -> list[Tier]:
        """The tiers, lowest first (the ``fee_tiers`` table)."""
        async with self._db() as session:
            rows = (await session.execute(text(TIERS_SQL))).mappings()
            return [Tier(**row) for row in rows]

    async def volume_30d(self, user_id: int) -> Decimal:
        """The user's quote volume over the last 30 days, both sides (exact)."""
        async with self._db() as session:
            volume = await session.scalar(text(USER_VOLUME_SQL), {"user_id": user_id})
            return Decimal(volume or 0)
