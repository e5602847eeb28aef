"""The worker's fee book: running volumes, the tier raise a fill triggers, pins, the job's
automatic changes, and what it loads at start."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
from hypothesis import given
from hypothesis import strategies as st

from app import fees, wire
from workers.matching.fees import FeeBook, load_fees

U = 100_000_000  # one USDT in units
THRESHOLDS = {1: 0, 2: 100_000 * U, 3: 1_000_000 * U, 4: 10_000_000 * U, 5: 50_000_000 * U}
TIERS = [
    fees.Tier(t, Decimal(0), Decimal(0), Decimal(v) / U) for t, v in sorted(THRESHOLDS.items())
]


def test_a_fill_reaching_a_threshold_raises_both_sides_once() -> None:
    book = FeeBook(dict(THRESHOLDS))
    book.traded(1, 2, 99_999 * U)
    assert book.take_upgrades() == []
    book.traded(1, 2, 1 * U)  # exactly 100,000: tier 2
    assert sorted(book.take_upgrades()) == [(1, 2), (2, 2)]
    book.traded(1, 2, 1 * U)
    assert book.take_upgrades() == []  # already there: nothing more to do
    book.traded(1, 3, 2_000_000 * U)  # past two thresholds at once: tier 3 directly
    assert sorted(book.take_upgrades()) == [(1, 3), (3, 3)]
    assert (book.tier_of(1), book.tier_of(2), book.tier_of(3)) == (3, 2, 3)


def test_a_pinned_user_is_never_raised_and_clearing_the_pin_lets_volume_decide() -> None:
    book = FeeBook(dict(THRESHOLDS))
    reply, tier, row = book.apply(wire.SetFeeTier(user_id=1, tier=1))
    assert (reply.ok, tier, row) == (
        True,
        1,
        {"id": 1, "fee_tier": 1, "fee_tier_override": True, "fee_volume_30d": None},
    )
    book.traded(1, 2, 500_000 * U)
    assert book.take_upgrades() == [(2, 2)]
    reply, tier, row = book.apply(wire.SetFeeTier(user_id=1, tier=None))
    assert (tier, row) == (
        None,
        {"id": 1, "fee_tier": 1, "fee_tier_override": False, "fee_volume_30d": None},
    )
    book.traded(1, 2, 1)
    assert book.take_upgrades() == [(1, 2)]


def test_the_job_resets_the_volume_and_may_lower_the_tier() -> None:
    book = FeeBook(dict(THRESHOLDS))
    book.traded(1, 2, 150_000 * U)
    book.take_upgrades()
    job = wire.SetFeeTier(user_id=1, tier=1, automatic=True, volume_30d="20", expected_tier=2)
    reply, tier, row = book.apply(job)
    assert (reply.ok, tier, row) == (
        True,
        1,
        {"id": 1, "fee_tier": 1, "fee_tier_override": None, "fee_volume_30d": "20"},
    )
    assert book.volume[1] == 20 * U
    book.traded(1, 2, 1000 * U)  # 1,020: no raise from the stale running volume
    assert book.take_upgrades() == []
    # Computed before a change of tier: refused, nothing changes.
    stale = wire.SetFeeTier(user_id=1, tier=3, automatic=True, volume_30d="0", expected_tier=2)
    reply, tier, row = book.apply(stale)
    assert (reply.ok, tier, row, book.volume[1]) == (False, None, None, 1020 * U)
    assert reply.error is not None and reply.error.field == "expected_tier"
    for bad in ("-1", "1.000000001", "NaN", "x"):
        wrong = wire.SetFeeTier(user_id=1, tier=1, automatic=True, volume_30d=bad)
        reply, _, _ = book.apply(wrong)
        assert reply.error is not None and reply.error.field == "volume_30d"


@given(st.lists(st.integers(0, 60_000_000 * U), max_size=30))
def test_the_raised_tier_is_the_one_the_volume_earns(values: list[int]) -> None:
    book = FeeBook(dict(THRESHOLDS))
    for value in values:
        book.traded(1, 2, value)
        book.take_upgrades()
    earned = fees.tier_for(TIERS, Decimal(sum(values)) / U)
    assert book.tier_of(1) == book.tier_of(2) == earned


async def test_the_worker_loads_tiers_pins_and_volumes(db: asyncpg.Connection) -> None:
    book = await load_fees(db)
    assert book.thresholds == THRESHOLDS
    volumes = {row["user_id"]: row["volume"] for row in await db.fetch(fees.VOLUMES_SQL)}
    assert book.volume == {user: int(volume * U) for user, volume in volumes.items()}
    for row in await db.fetch("SELECT id, fee_tier, fee_tier_override FROM users"):
        assert book.tier_of(row["id"]) == row["fee_tier"]
        assert (row["id"] in book.pinned) == row["fee_tier_override"]
