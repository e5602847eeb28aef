from __future__ import annotations

from datetime import datetime

import strawberry

from graph.context import Context
from graph.errors import not_found
from graph.ids import parse_id
from graph.pagination import DEFAULT_PAGE_SIZE, connection, page_request
from graph.permissions import IsAdmin
from graph.risk.types import (
    RiskEvent,
    RiskEventConnection,
    RiskEventType,
    RiskSeverity,
    event_filter,
)


@strawberry.type
class RiskQueries:
    @strawberry.field(
        permission_classes=[IsAdmin],
        description=(
            "Risk events, newest first (admin only; `first` at most 100). Every filter given "
            "must hold: `userId` (an unknown one is NOT_FOUND), `eventType`, `severity`, "
            "`resolved`, `rule` (`metadata.rule`), and `since` (inclusive) / `until` "
            "(exclusive) on the creation time (no offset means UTC; `until` before `since` "
            "is INVALID_INPUT)."
        ),
    )
    async def risk_events(
        self,
        info: strawberry.Info[Context, None],
        severity: RiskSeverity | None = None,
        resolved: bool | None = None,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
        user_id: strawberry.ID | None = None,
        event_type: RiskEventType | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        rule: str | None = None,
    ) -> RiskEventConnection | None:
        page = page_request(first, after)
        user_pk: int | None = None
        if user_id is not None:
            user_pk = parse_id(user_id)
            user = await info.context.loaders.user.load(user_pk) if user_pk else None
            if user is None:
                raise not_found(f"no user with id {user_id!r}", "userId")
        where = event_filter(
            user_id=user_pk,
            event_type=event_type,
            severity=severity,
            resolved=resolved,
            since=since,
            until=until,
            rule=rule,
        )
        rows = await info.context.services.risk.list_events(page, where)
        return connection(rows, RiskEvent.from_row, after=after)
