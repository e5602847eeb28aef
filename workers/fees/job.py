"""The fee job: every user's exact 30-day quote volume and the tier it earns, applied
through the matching worker (the single writer of ``users.fee_tier``).

One repeatable-read snapshot gives the tier table, the volumes (:data:`app.fees.VOLUMES_SQL`)
and each user's tier, pin and the volume the job last sent (``users.fee_volume_30d``).
A user gets a ``set_fee_tier`` command (``automatic``) only when their earned tier or their
volume differs from those: a rerun with nothing new sends nothing. Users an admin pinned
keep their tier (the worker refuses to move it either way); their volume is still sent, so
it is right when the pin is cleared. Each command names the tier the job read
(``expected_tier``): if a fill raised it meanwhile, the worker changes nothing and the
next run decides from trades that include that fill.

`tradegraph fees recompute` runs it once; `tradegraph jobs` runs it every day at
``TRADEGRAPH_FEE_RECOMPUTE_AT`` (UTC) and once when it starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from app import fees, wire
from app.kit.bus import CommandBus, CommandTimeout

log = logging.getLogger(__name__)

CONCURRENCY = 200
"""Commands in flight at once (the worker takes them in batches)."""


@dataclass
class Outcome:
    users: int = 0
    """Users looked at."""
    sent: int = 0
    """Commands sent (users whose tier or volume changed)."""
    changed: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Users whose tier the job changed: user → (old, new)."""
    pinned: int = 0
    """Users an admin pinned whose earned tier differs, sent a new volume (tier kept)."""
    stale: list[int] = field(default_factory=list)
    """Users whose tier a fill changed while the job ran (the next run decides)."""
    failed: list[int] = field(default_factory=list)

    def summary(self) -> str:
        ups = sum(1 for old, new in self.changed.values() if new > old)
        return (
            f"fee tiers: {self.users} users, {self.sent} commands, {ups} up, "
            f"{len(self.changed) - ups} down, {self.pinned} pinned by an admin, "
            f"{len(self.stale)} changed meanwhile, {len(self.failed)} failed"
        )


@dataclass(frozen=True, slots=True)
class Change:
    user_id: int
    old: int
    new: int
    volume: Decimal
    pinned: bool


async def plan(
    conn: asyncpg.Connection, users: Collection[int] | None = None
) -> tuple[int, list[Change]]:
    """How many users there are and what the job would send them, from one snapshot
    (``users``: only these)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        tiers = [fees.Tier(**row) for row in await conn.fetch(fees.TIERS_SQL)]
        volumes = {row["user_id"]: row["volume"] for row in await conn.fetch(fees.VOLUMES_SQL)}
        rows = await conn.fetch(
            "SELECT id, fee_tier, fee_tier_override, COALESCE(fee_volume_30d, 0) AS sent "
            "FROM users WHERE role <> 'system' AND ($1::bigint[] IS NULL OR id = ANY($1)) "
            "ORDER BY id",
            None if users is None else list(users),
        )
    changes = []
    for row in rows:
        volume = volumes.get(row["id"], Decimal(0))
        earned = fees.tier_for(tiers, volume)
        pinned = row["fee_tier_override"]
        # A pinned tier never moves: such a user is sent only a new volume.
        if volume != row["sent"] or (not pinned and earned != row["fee_tier"]):
            changes.append(Change(row["id"], row["fee_tier"], earned, volume, pinned))
    return len(rows), changes


async def recompute(
    conn: asyncpg.Connection,
    bus: CommandBus,
    *,
    users: Collection[int] | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109 - each command's deadline for the reply
) -> Outcome:
    """Run the job once (idempotent): send the changes, wait for the worker's replies."""
    count, changes = await plan(conn, users)
    outcome = Outcome(users=count, sent=len(changes))
    outcome.pinned = sum(1 for c in changes if c.pinned and c.new != c.old)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def send(change: Change) -> None:
        command = wire.SetFeeTier(
            user_id=change.user_id,
            tier=change.new,
            automatic=True,
            volume_30d=wire.decimal_text(change.volume),
            expected_tier=change.old,
        )
        async with gate:
            try:
                reply = await bus.send(command, timeout=timeout)
            except CommandTimeout:
                outcome.failed.append(change.user_id)
                return
        if reply.ok:
            if not change.pinned and change.new != change.old:
                outcome.changed[change.user_id] = (change.old, change.new)
        elif reply.error is not None and reply.error.field == "expected_tier":
            outcome.stale.append(change.user_id)
        else:
            log.warning("fee tier of user %d not applied: %s", change.user_id, reply.error)
            outcome.failed.append(change.user_id)

    await asyncio.gather(*(send(change) for change in changes))
    log.info("%s", outcome.summary())
    return outcome


def next_run(now: datetime, at: str) -> datetime:
    """The next ``HH:MM`` UTC strictly after ``now``."""
    hour, minute = map(int, at.split(":"))
    today = now.astimezone(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return today if today > now else today + timedelta(days=1)
