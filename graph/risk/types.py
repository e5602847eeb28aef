from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, cast

import strawberry
from strawberry.scalars import JSON

from app.kit.errors import Refused
from app.risk.models import RiskEvent as RiskEventRow
from app.risk.repository import EventFilter
from app.risk.service import check_filter
from graph.context import Context
from graph.errors import UserError, invalid_input
from graph.pagination import Connection

if TYPE_CHECKING:
    from graph.accounts.types import User


@strawberry.enum(description="How much a risk event matters.")
class RiskSeverity(Enum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


@strawberry.enum(description="What a risk event is about.")
class RiskEventType(Enum):
    WITHDRAWAL = "WITHDRAWAL"
    DEPOSIT = "DEPOSIT"
    TRADE = "TRADE"
    LOGIN = "LOGIN"
    SUSPICIOUS_ACTIVITY = "SUSPICIOUS_ACTIVITY"


@strawberry.type(description="Something the risk checks noticed, for an admin to look at.")
class RiskEvent:
    id: strawberry.ID
    event_type: RiskEventType
    severity: RiskSeverity
    description: str | None
    metadata: JSON | None
    resolved: bool
    created_at: datetime
    updated_at: datetime
    rule: str | None = strawberry.field(
        description=(
            "Which rule raised it (`metadata.rule`): e.g. self_trade, failed_login, new_ip, "
            "login_locked."
        )
    )
    resolution_note: str | None = strawberry.field(
        description="What the admin who resolved it noted (the latest note given)."
    )
    resolved_at: datetime | None = strawberry.field(
        description="When it was resolved (when the latest note was given)."
    )
    user_pk: strawberry.Private[int | None]
    resolved_by_pk: strawberry.Private[int | None]

    @strawberry.field(description="Whom it is about, if anyone.")
    async def user(
        self, info: strawberry.Info[Context, None]
    ) -> Annotated[User, strawberry.lazy("graph.accounts.types")] | None:
        return await _load_user(info, self.user_pk)

    @strawberry.field(description="The admin who resolved it (who gave the latest note).")
    async def resolved_by(
        self, info: strawberry.Info[Context, None]
    ) -> Annotated[User, strawberry.lazy("graph.accounts.types")] | None:
        return await _load_user(info, self.resolved_by_pk)

    @classmethod
    def from_row(cls, row: RiskEventRow) -> RiskEvent:
        return cls(
            id=strawberry.ID(str(row.id)),
            event_type=RiskEventType(row.event_type),
            severity=RiskSeverity(row.severity),
            description=row.description,
            metadata=cast(JSON, row.metadata_),
            resolved=bool(row.resolved),
            created_at=row.created_at,
            updated_at=row.updated_at,
            rule=row.rule,
            resolution_note=row.resolution_note,
            resolved_at=row.resolved_at,
            user_pk=row.user_id,
            resolved_by_pk=row.resolved_by,
        )


async def _load_user(
    info: strawberry.Info[Context, None], user_id: int | None
) -> Annotated[User, strawberry.lazy("graph.accounts.types")] | None:
    from graph.accounts.types import User

    if user_id is None:
        return None
    row = await info.context.loaders.user.load(user_id)
    return User.from_row(row) if row else None


def _utc(moment: datetime | None) -> datetime | None:
    """A time without an offset is UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def event_filter(
    *,
    user_id: int | None = None,
    event_type: RiskEventType | None = None,
    severity: RiskSeverity | None = None,
    resolved: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    rule: str | None = None,
) -> EventFilter:
    """The filter these arguments ask for; a top-level INVALID_INPUT error (with the
    argument) for a window that ends before it starts or a rule name too long."""
    where = EventFilter(
        user_id=user_id,
        event_type=event_type.value if event_type else None,
        severity=severity.value if severity else None,
        resolved=resolved,
        since=_utc(since),
        until=_utc(until),
        rule=rule,
    )
    try:
        check_filter(where)
    except Refused as refusal:
        [problem] = refusal.problems
        raise invalid_input(problem.message, problem.field or "(arguments)") from refusal
    return where


RiskEventConnection = Connection[RiskEvent]


@strawberry.type(description="The result of resolveRiskEvent.")
class ResolveRiskEventPayload:
    risk_event: RiskEvent | None
    errors: list[UserError]
