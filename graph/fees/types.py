from __future__ import annotations

from decimal import Decimal

import strawberry

from app.fees import Tier


@strawberry.type(
    description=(
        "A fee tier: from `minVolume30d` of 30-day quote volume (USDT, both sides of your "
        "trades), maker and taker fees as fractions (0.001 = 0.1 %)."
    )
)
class FeeTier:
    tier: int
    min_volume_30d: Decimal
    maker_fee: Decimal
    taker_fee: Decimal

    @classmethod
    def from_tier(cls, tier: Tier) -> FeeTier:
        return cls(
            tier=tier.tier,
            min_volume_30d=tier.min_volume_30d.normalize(),
            maker_fee=tier.maker_rate.normalize(),
            taker_fee=tier.taker_rate.normalize(),
        )


@strawberry.type(description="The tier above yours and the 30-day volume still needed for it.")
class NextFeeTier:
    tier: int
    volume_needed: Decimal
