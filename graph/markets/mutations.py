from __future__ import annotations

import strawberry

from graph.context import Context
from graph.errors import UserError, user_errors
from graph.markets.types import Market
from graph.permissions import IsAdmin

Info = strawberry.Info[Context, None]


@strawberry.type
class MarketPayload:
    market: Market | None
    errors: list[UserError]


async def _set(info: Info, symbol: str, halted: bool, reason: str = "") -> MarketPayload:
    outcome = await info.context.services.markets.set_halted(symbol, halted, reason)
    if isinstance(outcome, list):
        return MarketPayload(market=None, errors=user_errors(outcome))
    return MarketPayload(market=Market.from_row(outcome), errors=[])


@strawberry.type
class MarketMutations:
    @strawberry.mutation(
        permission_classes=[IsAdmin],
        description="Admin: stop new orders on a market (resting orders stay; cancels work).",
    )
    async def halt_market(self, info: Info, symbol: str, reason: str) -> MarketPayload | None:
        return await _set(info, symbol, True, reason)

    @strawberry.mutation(permission_classes=[IsAdmin], description="Admin: reopen a market.")
    async def resume_market(self, info: Info, symbol: str) -> MarketPayload | None:
        return await _set(info, symbol, False)
