"""What the API needs about risk events: admins list and resolve them; the API raises the
login ones (:mod:`app.risk.logins`).

Most risk events are written by the matching worker (self-trade prevention, circuit
breakers...); the API writes the LOGIN events and sets the resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import wire
from app.kit.errors import Problem, Refused
from app.kit.pagination import Page, PageRequest
from app.kit.redis import Keys
from app.risk import repository
from app.risk.errors import RiskErrorCode
from app.risk.models import RiskEvent
from app.risk.repository import NO_FILTER, EventFilter

SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
EVENT_TYPES = ("WITHDRAWAL", "DEPOSIT", "TRADE", "LOGIN", "SUSPICIOUS_ACTIVITY")
MAX_NOTE_LENGTH = 200
"""The longest resolution note (``risk_events.resolution_note`` checks it too)."""
MAX_RULE_LENGTH = 64


def _refused(code: RiskErrorCode, message: str, field: str) -> Refused:
    return Refused(Problem(code.value, message, field))


class RiskService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        redis: Redis | None = None,
        keys: Keys | None = None,
    ) -> None:
        self._db = sessions
        self._redis = redis
        self._keys = keys

    async def list_events(
        self, page: PageRequest, where: EventFilter = NO_FILTER
    ) -> Page[RiskEvent]:
        """Events newest first, narrowed by ``where``; :class:`Refused` (INVALID_INPUT) for
        a window that ends before it starts or a rule name too long to be one."""
        check_filter(where)
        async with self._db() as session:
            return await repository.list_events(session, page, where)

    async def get_many(self, event_ids: Sequence[int]) -> Sequence[RiskEvent]:
        async with self._db() as session:
            return await repository.get_events(session, event_ids)

    async def latest_for_users(
        self, user_ids: Sequence[int], limit: int, where: EventFilter = NO_FILTER
    ) -> dict[int, list[RiskEvent]]:
        async with self._db() as session:
            rows = await repository.latest_for_users(session, user_ids, limit, where)
        by_user: dict[int, list[RiskEvent]] = {user_id: [] for user_id in user_ids}
        for row in rows:
            if row.user_id is not None:
                by_user[row.user_id].append(row)
        return by_user

    async def resolve(self, event_id: int, *, by: int, note: str | None = None) -> RiskEvent:
        """Mark the event resolved by admin ``by``, with an optional ``note``.

        The first resolution stands: resolving again changes nothing, unless a new note is
        given — that replaces the note, and who resolved it and when become its author and
        now. The note is stripped; an empty one is no note; past :data:`MAX_NOTE_LENGTH`
        characters it is refused (INVALID_INPUT, field ``note``).
        """
        if note is not None:
            note = note.strip() or None
        if note is not None and len(note) > MAX_NOTE_LENGTH:
            raise _refused(
                RiskErrorCode.INVALID_INPUT,
                f"the note must be at most {MAX_NOTE_LENGTH} characters (it has {len(note)})",
                "note",
            )
        async with self._db() as session, session.begin():
            event = await repository.resolve(session, event_id, by=by, note=note)
        if event is None:
            raise _refused(RiskErrorCode.NOT_FOUND, f"no risk event with id {event_id}", "id")
        return event

    async def raise_event(
        self,
        *,
        user_id: int | None,
        event_type: str,
        severity: str,
        description: str,
        metadata: dict[str, Any],
    ) -> int:
        """Write one event (``metadata["rule"]`` names its rule) and publish it as a
        :class:`wire.RiskAlert` on the risk channel, for admins' ``riskAlerts``; its id."""
        assert event_type in EVENT_TYPES and severity in SEVERITIES
        async with self._db() as session, session.begin():
            event_id = await repository.insert_event(
                session,
                user_id=user_id,
                event_type=event_type,
                severity=severity,
                description=description,
                metadata=metadata,
            )
        if self._redis is not None and self._keys is not None:
            alert = wire.RiskAlert(
                id=event_id,
                user_id=user_id,
                event_type=wire.RiskEventType(event_type),
                severity=wire.RiskSeverity(severity),
                description=description,
                rule=metadata.get("rule"),
            )
            await self._redis.publish(self._keys.risk_channel(), wire.encode(alert))
        return event_id


def check_filter(where: EventFilter) -> None:
    if where.since is not None and where.until is not None and where.until < where.since:
        raise _refused(
            RiskErrorCode.INVALID_INPUT,
            f"`until` ({where.until.isoformat()}) is before `since` ({where.since.isoformat()})",
            "until",
        )
    if where.rule is not None and len(where.rule) > MAX_RULE_LENGTH:
        raise _refused(
            RiskErrorCode.INVALID_INPUT,
            f"`rule` must be at most {MAX_RULE_LENGTH} characters",
            "rule",
        )
