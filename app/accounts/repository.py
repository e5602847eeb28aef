"""Every query about users."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import User


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.execute(select(User).where(User.email == email))
    return result.scalar_one_or_none()


async def fee_account_id(session: AsyncSession) -> int:
    result = await session.execute(select(User.id).where(User.role == "system"))
    return result.scalar_one()
