from __future__ import annotations

import strawberry

from graph.context import Context
from graph.pagination import DEFAULT_PAGE_SIZE, connection, page_request
from graph.permissions import IsAdmin
from graph.risk.types import RiskEvent, RiskEventConnection, RiskSeverity


@strawberry.type
class RiskQueries:
    @strawberry.field(
        permission_classes=[IsAdmin],
        description="Risk events, newest first (admin only; `first` at most 100).",
    )
    async def risk_events(
        self,
        info: strawberry.Info[Context, None],
        severity: RiskSeverity | None = None,
        resolved: bool | None = None,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> RiskEventConnection | None:
        page = await info.context.services.risk.list_events(
            page_request(first, after),
            severity=severity.value if severity else None,
            resolved=resolved,
        )
        return connection(page, RiskEvent.from_row, after=after)
