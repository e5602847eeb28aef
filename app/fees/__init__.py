"""Volume fee tiers: the table, a user's 30-day quote volume, and the tier it earns.

Shared by the API (``me { volume30d nextTier }``, ``feeSchedule``), the matching worker
(each user's running volume, loaded at start) and the fee job (``workers/fees``): one
definition of the volume, so all three agree.

**30-day quote volume**: over the user's trades executed in the last 30 days, both sides
(maker and taker, buyer and seller), the quote amount that changed hands — ``price ×
quantity`` truncated to 1e-8, exactly what the engine settles (``trades`` has no quote
column; the truncation is the engine's, so the worker's running sum and this one agree).
Every market quotes USDT today, so the volumes add up in one asset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

WINDOW = "30 days"

VOLUMES_SQL = f"""
SELECT user_id, sum(value) AS volume FROM (
    SELECT buyer_user_id AS user_id, trunc(price * quantity, 8) AS value FROM trades
    WHERE executed_at > now() - interval '{WINDOW}'
    UNION ALL
    SELECT seller_user_id, trunc(price * quantity, 8) FROM trades
    WHERE executed_at > now() - interval '{WINDOW}'
) AS sides
GROUP BY user_id
"""
"""Every user with trades in the window and their volume (``DECIMAL``)."""

USER_VOLUME_SQL = f"""
SELECT COALESCE(sum(trunc(price * quantity, 8)), 0) AS volume FROM trades
WHERE (buyer_user_id = :user_id OR seller_user_id = :user_id)
    AND executed_at > now() - interval '{WINDOW}'
"""
"""One user's volume (a trade has two different users: self-trades never execute)."""

TIERS_SQL = "SELECT tier, maker_rate, taker_rate, min_volume_30d FROM fee_tiers ORDER BY tier"


@dataclass(frozen=True, slots=True)
class Tier:
    tier: int
    maker_rate: Decimal
    """A fraction: 0.001 is 0.1 %."""
    taker_rate: Decimal
    min_volume_30d: Decimal


def tier_for(tiers: Sequence[Tier], volume: Decimal) -> int:
    """The highest tier whose threshold ``volume`` reaches (tier 1 has threshold 0)."""
    earned = tiers[0].tier
    for tier in tiers:
        if volume >= tier.min_volume_30d:
            earned = max(earned, tier.tier)
    return earned


def next_tier(tiers: Sequence[Tier], current: int) -> Tier | None:
    """The tier above ``current`` (None at the top)."""
    above = [tier for tier in tiers if tier.tier > current]
    return min(above, key=lambda tier: tier.tier) if above else None
