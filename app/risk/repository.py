"""Every query about risk events."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.pagination import Page, PageRequest, keyset_page
from app.risk.models import RiskEvent


async def list_events(
    session: AsyncSession,
    page: PageRequest,
    *,
    severity: str | None = None,
    resolved: bool | None = None,
    user_id: int | None = None,
) -> Page[RiskEvent]:
    statement = select(RiskEvent)
    if severity is not None:
        statement = statement.where(RiskEvent.severity == severity)
    if resolved is not None:
        statement = statement.where(RiskEvent.resolved.is_(resolved))
    if user_id is not None:
        statement = statement.where(RiskEvent.user_id == user_id)
    return await keyset_page(session, statement, RiskEvent.id, page)


async def get_events(session: AsyncSession, event_ids: Sequence[int]) -> Sequence[RiskEvent]:
    result = await session.execute(
        select(RiskEvent).where(RiskEvent.id.in_(event_ids)).order_by(RiskEvent.id)
    )
    return result.scalars().all()


async def latest_for_users(
    session: AsyncSession, user_ids: Sequence[int], limit: int
) -> Sequence[RiskEvent]:
    """Each user's ``limit`` newest events, in one query (for a DataLoader)."""
    rank = (
        func.row_number()
        .over(partition_by=RiskEvent.user_id, order_by=RiskEvent.id.desc())
        .label("rank")
    )
    ranked = select(RiskEvent.id, rank).where(RiskEvent.user_id.in_(user_ids)).subquery("ranked")
    statement = (
        select(RiskEvent)
        .join(ranked, ranked.c.id == RiskEvent.id)
        .where(ranked.c.rank <= limit)
        .order_by(RiskEvent.user_id, RiskEvent.id.desc())
    )
    return (await session.execute(statement)).scalars().all()


async def resolve(session: AsyncSession, event_id: int) -> RiskEvent | None:
    """Set ``resolved``; an event already resolved is returned untouched."""
    result = await session.execute(
        update(RiskEvent)
        .where(RiskEvent.id == event_id, RiskEvent.resolved.is_not(True))
        .values(resolved=True)
        .returning(RiskEvent)
    )
    return result.scalar_one_or_none() or await session.get(RiskEvent, event_id)
