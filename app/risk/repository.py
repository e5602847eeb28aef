"""Every query about risk events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.pagination import Page, PageRequest, keyset_page
from app.risk.models import RiskEvent


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What an admin narrows risk events to; ``None`` leaves a field out.

    ``since`` is inclusive and ``until`` exclusive, both on ``created_at``; ``rule`` is
    ``metadata.rule``.
    """

    user_id: int | None = None
    event_type: str | None = None
    severity: str | None = None
    resolved: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
    rule: str | None = None


NO_FILTER = EventFilter()


def _filtered(statement: Select[Any], where: EventFilter) -> Select[Any]:
    if where.user_id is not None:
        statement = statement.where(RiskEvent.user_id == where.user_id)
    if where.event_type is not None:
        statement = statement.where(RiskEvent.event_type == where.event_type)
    if where.severity is not None:
        statement = statement.where(RiskEvent.severity == where.severity)
    if where.resolved is True:
        statement = statement.where(RiskEvent.resolved.is_(True))
    elif where.resolved is False:  # the seed's column may be NULL: that is not resolved
        statement = statement.where(
            or_(RiskEvent.resolved.is_(False), RiskEvent.resolved.is_(None))
        )
    if where.since is not None:
        statement = statement.where(RiskEvent.created_at >= where.since)
    if where.until is not None:
        statement = statement.where(RiskEvent.created_at < where.until)
    if where.rule is not None:
        statement = statement.where(RiskEvent.metadata_["rule"].astext == where.rule)
    return statement


async def list_events(
    session: AsyncSession, page: PageRequest, where: EventFilter = NO_FILTER
) -> Page[RiskEvent]:
    return await keyset_page(session, _filtered(select(RiskEvent), where), RiskEvent.id, page)


async def get_events(session: AsyncSession, event_ids: Sequence[int]) -> Sequence[RiskEvent]:
    result = await session.execute(
        select(RiskEvent).where(RiskEvent.id.in_(event_ids)).order_by(RiskEvent.id)
    )
    return result.scalars().all()


async def latest_for_users(
    session: AsyncSession, user_ids: Sequence[int], limit: int, where: EventFilter = NO_FILTER
) -> Sequence[RiskEvent]:
    """Each user's ``limit`` newest events matching ``where``, in one query (a DataLoader's)."""
    rank = (
        func.row_number()
        .over(partition_by=RiskEvent.user_id, order_by=RiskEvent.id.desc())
        .label("rank")
    )
    ranked = _filtered(
        select(RiskEvent.id, rank).where(RiskEvent.user_id.in_(user_ids)), where
    ).subquery("ranked")
    statement = (
        select(RiskEvent)
        .join(ranked, ranked.c.id == RiskEvent.id)
        .where(ranked.c.rank <= limit)
        .order_by(RiskEvent.user_id, RiskEvent.id.desc())
    )
    return (await session.execute(statement)).scalars().all()


async def resolve(
    session: AsyncSession, event_id: int, *, by: int, note: str | None
) -> RiskEvent | None:
    """Resolve the event, by admin ``by``, with ``note``.

    The first resolution stands: resolving a resolved event again changes nothing unless it
    brings a new note, which then replaces the note and who/when (the note's author).
    """
    resolution = {"resolved": True, "resolved_at": func.now(), "resolved_by": by}
    condition: ColumnElement[bool] = RiskEvent.resolved.is_not(True)
    if note is not None:
        condition = or_(
            condition, RiskEvent.resolution_note.is_(None), RiskEvent.resolution_note != note
        )
    result = await session.execute(
        update(RiskEvent)
        .where(RiskEvent.id == event_id, condition)
        .values(**resolution, **({"resolution_note": note} if note is not None else {}))
        .returning(RiskEvent)
        .execution_options(synchronize_session=False)
    )
    changed = result.scalar_one_or_none()
    if changed is not None:
        return changed
    return await session.get(RiskEvent, event_id)


async def insert_event(
    session: AsyncSession,
    *,
    user_id: int | None,
    event_type: str,
    severity: str,
    description: str,
    metadata: dict[str, Any],
) -> int:
    """Write one event; its id."""
    result = await session.execute(
        insert(RiskEvent)
        .values(
            user_id=user_id,
            event_type=event_type,
            severity=severity,
            description=description,
            metadata_=metadata,
        )
        .returning(RiskEvent.id)
    )
    return int(result.scalar_one())
