from __future__ import annotations

import strawberry

from graph.context import Context
from graph.fees.types import FeeTier


@strawberry.type
class FeeQueries:
    @strawberry.field(
        description=(
            "The fee tiers (public), lowest first: a user's tier follows their 30-day quote "
            "volume unless an admin pinned it."
        )
    )
    async def fee_schedule(self, info: strawberry.Info[Context, None]) -> list[FeeTier]:
        return [FeeTier.from_tier(tier) for tier in await info.context.services.fees.schedule()]
