"""Every query about users."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.models import User
from app.kit.pagination import Page, PageRequest, keyset_page


async def get_user(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def get_users(session: AsyncSession, user_ids: Sequence[int]) -> Sequence[User]:
    result = await session.execute(select(User).where(User.id.in_(user_ids)))
    return result.scalars().all()


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.execute(select(User).where(User.email == email))
    return result.scalar_one_or_none()


async def username_taken(session: AsyncSession, username: str) -> bool:
    """Usernames are unique regardless of case (``Alice`` and ``alice`` are one name)."""
    result = await session.execute(
        select(User.id).where(func.lower(User.username) == username.lower()).limit(1)
    )
    return result.first() is not None


async def list_users(
    session: AsyncSession, page: PageRequest, *, kyc_status: str | None = None
) -> Page[User]:
    """Users newest first; the exchange's own ``system`` account is not one of them."""
    statement = select(User).where(User.role != "system")
    if kyc_status is not None:
        statement = statement.where(User.kyc_status == kyc_status)
    return await keyset_page(session, statement, User.id, page)


async def fee_account_id(session: AsyncSession) -> int:
    result = await session.execute(select(User.id).where(User.role == "system"))
    return result.scalar_one()


_SEEN_FROM = text(
    """
    WITH known AS (SELECT count(*) AS n FROM login_ips WHERE user_id = :user_id),
    seen AS (
        INSERT INTO login_ips (user_id, ip) VALUES (:user_id, CAST(:ip AS inet))
        ON CONFLICT (user_id, ip)
        DO UPDATE SET last_seen = CURRENT_TIMESTAMP, count = login_ips.count + 1
        RETURNING (xmax = 0) AS new
    )
    SELECT seen.new, known.n FROM seen, known
    """
)


async def record_login_ip(session: AsyncSession, user_id: int, ip: str) -> tuple[bool, int]:
    """Note that ``user_id`` logged in from ``ip``: whether the address is new for them,
    and how many addresses they had before (one statement: the count is from before it)."""
    row = (await session.execute(_SEEN_FROM, {"user_id": user_id, "ip": ip})).one()
    return bool(row[0]), int(row[1])
