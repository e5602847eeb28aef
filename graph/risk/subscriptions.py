from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from app import wire
from app.kit.pubsub import GAP, OVERFLOW
from graph.context import Context
from graph.errors import unauthenticated
from graph.permissions import IsAdmin
from graph.risk.types import RiskEvent

Info = strawberry.Info[Context, None]


@strawberry.type
class RiskSubscriptions:
    @strawberry.subscription(
        permission_classes=[IsAdmin], description="Admin: risk events as they are raised."
    )
    async def risk_alerts(self, info: Info) -> AsyncGenerator[RiskEvent, None]:
        services = info.context.services
        async with services.broadcast.subscribe(services.keys.risk_channel()) as sub:
            async for event in sub:
                if event.message in (GAP, OVERFLOW):
                    continue
                if not await info.context.session_still_live():
                    raise unauthenticated("your session has ended")
                alert = wire.decode_risk_alert(event.message)
                if alert.id is None:
                    continue
                rows = await services.risk.get_many([alert.id])
                for row in rows:
                    yield RiskEvent.from_row(row)
