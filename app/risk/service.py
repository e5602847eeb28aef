"""What the API needs about risk events: admins list and resolve them.

Risk events are written by the matching worker (self-trade prevention, circuit breakers...);
the API only ever sets ``resolved``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.kit.errors import Problem, Refused
from app.kit.pagination import Page, PageRequest
from app.risk import repository
from app.risk.errors import RiskErrorCode
from app.risk.models import RiskEvent

SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
EVENT_TYPES = ("WITHDRAWAL", "DEPOSIT", "TRADE", "LOGIN", "SUSPICIOUS_ACTIVITY")


class RiskService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._db = sessions

    async def list_events(
        self,
        page: PageRequest,
        *,
        severity: str | None = None,
        resolved: bool | None = None,
        user_id: int | None = None,
    ) -> Page[RiskEvent]:
        async with self._db() as session:
            return await repository.list_events(
                session, page, severity=severity, resolved=resolved, user_id=user_id
            )

    async def get_many(self, event_ids: Sequence[int]) -> Sequence[RiskEvent]:
        async with self._db() as session:
            return await repository.get_events(session, event_ids)

    async def latest_for_users(
        self, user_ids: Sequence[int], limit: int
    ) -> dict[int, list[RiskEvent]]:
        async with self._db() as session:
            rows = await repository.latest_for_users(session, user_ids, limit)
        by_user: dict[int, list[RiskEvent]] = {user_id: [] for user_id in user_ids}
        for row in rows:
            if row.user_id is not None:
                by_user[row.user_id].append(row)
        return by_user

    async def resolve(self, event_id: int) -> RiskEvent:
        """Mark the event resolved (resolving a resolved event changes nothing)."""
        async with self._db() as session, session.begin():
            event = await repository.resolve(session, event_id)
        if event is None:
            raise Refused(
                Problem(RiskErrorCode.NOT_FOUND.value, f"no risk event with id {event_id}", "id")
            )
        return event
