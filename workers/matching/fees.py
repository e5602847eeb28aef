"""Volume fee tiers, held by the matching worker (it charges the fees, so it owns the tiers).

The worker keeps every user's running 30-day quote volume (:mod:`app.fees`): loaded from
the trades at start, raised by each fill (:meth:`FeeBook.traded`, a dict update per side).
When a fill takes a user who is not pinned by an admin to the next tier's threshold, the
worker raises the tier at once, in the same batch: the user's next order pays the new
rates. The volume only grows here; trades leaving the window are the fee job's
(``workers/fees``): it computes the exact volumes and sends ``set_fee_tier`` with
``automatic``, which resets the running volume and may lower (or raise) the tier.

Admins pin a tier (``set_fee_tier``: ``fee_tier_override``); volume never moves a pinned
tier, from a fill or from the job. Clearing the pin leaves the tier where it is until the
next threshold a fill reaches, or the next job run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import asyncpg

from app import fees, wire
from engine import SCALE, RejectCode
from workers.matching.codec import rejected

NEVER = 1 << 127
"""A threshold no volume reaches (pinned users, the top tier)."""

FeeRow = dict[str, object]


@dataclass
class FeeBook:
    thresholds: dict[int, int]
    """Tier → minimum 30-day volume, in 1e-8 units of the quote asset."""
    volume: dict[int, int] = field(default_factory=dict)
    tiers: dict[int, int] = field(default_factory=dict)
    """Users not on tier 1."""
    pinned: set[int] = field(default_factory=set)
    next_up: dict[int, int] = field(default_factory=dict)
    """The volume at which a user's tier rises; users missing are on tier 1, not pinned."""
    upgrades: dict[int, int] = field(default_factory=dict)
    """Users whose fill reached a higher tier: user → tier (the worker applies them)."""

    def __post_init__(self) -> None:
        self.first_up = self._threshold_above(1)

    def _threshold_above(self, tier: int) -> int:
        above = [v for t, v in self.thresholds.items() if t > tier]
        return min(above) if above else NEVER

    def tier_of(self, user_id: int) -> int:
        return self.tiers.get(user_id, 1)

    def earned(self, volume: int) -> int:
        return max(t for t, v in self.thresholds.items() if volume >= v)

    def _set(self, user_id: int, tier: int) -> None:
        if tier == 1:
            self.tiers.pop(user_id, None)
        else:
            self.tiers[user_id] = tier
        self.next_up[user_id] = NEVER if user_id in self.pinned else self._threshold_above(tier)

    def traded(self, buyer: int, seller: int, value: int) -> None:
        """One fill: both sides' volume rises by its quote amount (the hot path)."""
        volume = self.volume
        total = volume.get(buyer, 0) + value
        volume[buyer] = total
        if total >= self.next_up.get(buyer, self.first_up):
            self.upgrades[buyer] = self.earned(total)
        total = volume.get(seller, 0) + value
        volume[seller] = total
        if total >= self.next_up.get(seller, self.first_up):
            self.upgrades[seller] = self.earned(total)

    def take_upgrades(self) -> list[tuple[int, int]]:
        """The tier raises due (each applied once: the user's threshold moves up)."""
        due = [
            (u, t) for u, t in self.upgrades.items() if t > self.tier_of(u) and u not in self.pinned
        ]
        self.upgrades.clear()
        for user_id, tier in due:
            self._set(user_id, tier)
        return due

    def apply(self, command: wire.SetFeeTier) -> tuple[wire.Reply, int | None, FeeRow | None]:
        """A ``set_fee_tier``: the reply, the tier the engine must charge from now on (None:
        unchanged) and the ``users`` row to write."""
        user_id = command.user_id
        current = self.tier_of(user_id)
        if not command.automatic:
            if command.tier is None:  # the admin clears the pin
                self.pinned.discard(user_id)
                self._set(user_id, current)
                return wire.Reply(), None, fee_row(user_id, current, override=False)
            if command.tier not in self.thresholds:
                return (
                    rejected(RejectCode.INVALID_INPUT, "fee tier must be 1 to 5", "tier"),
                    None,
                    None,
                )
            self.pinned.add(user_id)
            self._set(user_id, command.tier)
            return wire.Reply(), command.tier, fee_row(user_id, command.tier, override=True)
        # The fee job.
        if command.tier is None or command.tier not in self.thresholds:
            return (
                rejected(RejectCode.INVALID_INPUT, "the job names a tier 1 to 5", "tier"),
                None,
                None,
            )
        if command.volume_30d is None:
            return (
                rejected(RejectCode.INVALID_INPUT, "the job sends the volume", "volume_30d"),
                None,
                None,
            )
        volume = _volume_units(command.volume_30d)
        if volume is None:
            message = "the volume is a decimal of at most 8 places, at least 0"
            return rejected(RejectCode.INVALID_INPUT, message, "volume_30d"), None, None
        if command.expected_tier is not None and command.expected_tier != current:
            # A fill (or an admin) changed the tier since the job read it: the next run
            # decides again, from trades that include that fill.
            message = f"the tier is {current} now, not {command.expected_tier}; nothing changed"
            return rejected(RejectCode.INVALID_INPUT, message, "expected_tier"), None, None
        self.volume[user_id] = volume
        row_volume = wire.amount_text(volume)
        if user_id in self.pinned or command.tier == current:
            return wire.Reply(), None, fee_row(user_id, current, volume=row_volume)
        self._set(user_id, command.tier)
        return wire.Reply(), command.tier, fee_row(user_id, command.tier, volume=row_volume)


def fee_row(
    user_id: int, tier: int, *, override: bool | None = None, volume: str | None = None
) -> FeeRow:
    """A ``users`` change: None leaves ``fee_tier_override`` / ``fee_volume_30d`` as they are."""
    return {
        "id": user_id,
        "fee_tier": tier,
        "fee_tier_override": override,
        "fee_volume_30d": volume,
    }


def _units(value: Decimal) -> int:
    return int(value * SCALE)


def _volume_units(text: str) -> int | None:
    """A volume from the wire in 1e-8 units (it may exceed the engine's amount limit)."""
    try:
        value = Decimal(text)
    except ArithmeticError:
        return None
    if not value.is_finite() or value < 0 or value != value.quantize(Decimal("1e-8")):
        return None
    return _units(value)


async def load_fees(conn: asyncpg.Connection) -> FeeBook:
    """The tier table, every user's tier and pin, and the 30-day volumes (at start)."""
    thresholds = {
        row["tier"]: _units(row["min_volume_30d"]) for row in await conn.fetch(fees.TIERS_SQL)
    }
    book = FeeBook(thresholds)
    book.volume = {
        row["user_id"]: _units(row["volume"]) for row in await conn.fetch(fees.VOLUMES_SQL)
    }
    for row in await conn.fetch(
        "SELECT id, fee_tier, fee_tier_override FROM users WHERE fee_tier <> 1 OR fee_tier_override"
    ):
        if row["fee_tier_override"]:
            book.pinned.add(row["id"])
        book._set(row["id"], row["fee_tier"])
    return book
