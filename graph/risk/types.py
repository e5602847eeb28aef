from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, cast

import strawberry
from strawberry.scalars import JSON

from app.risk.models import RiskEvent as RiskEventRow
from graph.context import Context
from graph.errors import UserError
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
    user_pk: strawberry.Private[int | None]

    @strawberry.field(description="Whom it is about, if anyone.")
    async def user(
        self, info: strawberry.Info[Context, None]
    ) -> Annotated[User, strawberry.lazy("graph.accounts.types")] | None:
        from graph.accounts.types import User

        if self.user_pk is None:
            return None
        row = await info.context.loaders.user.load(self.user_pk)
        return User.from_row(row) if row else None

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
            user_pk=row.user_id,
        )


RiskEventConnection = Connection[RiskEvent]


@strawberry.type(description="The result of resolveRiskEvent.")
class ResolveRiskEventPayload:
    risk_event: RiskEvent | None
    errors: list[UserError]
