from __future__ import annotations

import strawberry

from graph.balances.types import Balance
from graph.context import Context
from graph.permissions import IsAuthenticated, require_viewer

Info = strawberry.Info[Context, None]


@strawberry.type
class BalanceQueries:
    @strawberry.field(permission_classes=[IsAuthenticated], description="Your balances, by asset.")
    async def balances(self, info: Info) -> list[Balance] | None:
        viewer = await require_viewer(info)
        rows = await info.context.services.balances.of_user(viewer.user_id)
        return [Balance.from_row(row) for row in rows]
