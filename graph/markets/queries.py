from __future__ import annotations

import strawberry

from graph.context import Context
from graph.markets.types import Market


@strawberry.type
class MarketQueries:
    @strawberry.field(description="Every market, by symbol.")
    async def markets(self, info: strawberry.Info[Context, None]) -> list[Market]:
        rows = await info.context.services.markets.list()
        return [Market.from_row(row) for row in rows]

    @strawberry.field(description="One market, or null if there is no such symbol.")
    async def market(self, info: strawberry.Info[Context, None], symbol: str) -> Market | None:
        row = await info.context.services.markets.get(symbol)
        return Market.from_row(row) if row else None
