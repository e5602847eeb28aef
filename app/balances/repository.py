"""Every query about balances (read-only: the worker writes them)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import Balance


async def list_balances(session: AsyncSession, user_id: int) -> Sequence[Balance]:
    result = await session.execute(
        select(Balance).where(Balance.user_id == user_id).order_by(Balance.asset)
    )
    return result.scalars().all()


async def balances_of(session: AsyncSession, user_ids: Sequence[int]) -> Sequence[Balance]:
    result = await session.execute(
        select(Balance).where(Balance.user_id.in_(user_ids)).order_by(Balance.asset)
    )
    return result.scalars().all()
