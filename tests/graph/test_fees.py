"""Volume fee tiers through the real API and the real matching worker: a fill that takes a
user past a threshold raises their tier for the next one, the fee job (exact volumes,
volume leaving the window) and admins' pins, `me`'s fee fields and `feeSchedule`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from starlette.applications import Starlette

from app import wire
from app.config import Settings
from app.kit.bus import CommandBus
from app.kit.db import plain_url
from app.services import Services
from tests.graph.test_admin import as_admin, fetch_user
from tests.support.api import asgi_client, graphql
from tests.support.exchange import deposit, rebuild_candles
from tests.support.factories import create_user, login
from tests.support.processes import ROOT, Platform, process_env
from workers.fees.job import Outcome, next_run, recompute

ME = """{ me { feeTier feeTierOverride volume30d nextTier { tier volumeNeeded }
  makerFee takerFee } }"""
PLACE = """mutation($input: PlaceOrderInput!) { placeOrder(input: $input) {
  order { id status } fills { id price quantity fee feeAsset liquidity }
  errors { code field message } } }"""


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    assert settings.database_url
    conn = await asyncpg.connect(plain_url(settings.database_url))
    yield conn
    await conn.close()


class Trader:
    def __init__(self, app: Starlette, user_id: int, token: str) -> None:
        self.app, self.id, self.token = app, user_id, token

    async def query(self, document: str, **variables: Any) -> dict[str, Any]:
        async with asgi_client(self.app) as client:
            body = await graphql(client, document, variables, token=self.token)
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    async def order(self, side: str, quantity: str, price: str) -> dict[str, Any]:
        order = {"symbol": "BTC-USDT", "side": side, "type": "LIMIT"}
        data = await self.query(PLACE, input={**order, "quantity": quantity, "price": price})
        payload: dict[str, Any] = data["placeOrder"]
        assert payload["errors"] == [], payload
        return payload

    async def me(self) -> dict[str, Any]:
        me: dict[str, Any] = (await self.query(ME))["me"]
        return me


async def trader(app: Starlette, services: Services, bus: CommandBus) -> Trader:
    user = await create_user(services, kyc_status="approved")
    await deposit(bus, user.id, "BTC", "100")
    await deposit(bus, user.id, "USDT", "1000000")
    return Trader(app, user.id, await login(services, user))


async def trade(seller: Trader, buyer: Trader, quantity: str, price: str) -> dict[str, Any]:
    """The seller rests (maker), the buyer takes; the trade's fees as stored."""
    await seller.order("SELL", quantity, price)
    taken = await buyer.order("BUY", quantity, price)
    (fill,) = taken["fills"]
    assert fill["liquidity"] == "TAKER"
    shown: dict[str, Any] = fill
    return shown


async def fees_of(db: asyncpg.Connection, trade_id: str) -> tuple[Decimal, Decimal]:
    row = await db.fetchrow("SELECT buyer_fee, seller_fee FROM trades WHERE id = $1", int(trade_id))
    return row["buyer_fee"], row["seller_fee"]


async def tier_row(db: asyncpg.Connection, user_id: int) -> tuple[int, bool, Decimal | None]:
    row = await db.fetchrow(
        "SELECT fee_tier, fee_tier_override, fee_volume_30d FROM users WHERE id = $1", user_id
    )
    return row["fee_tier"], row["fee_tier_override"], row["fee_volume_30d"]


async def job(db: asyncpg.Connection, bus: CommandBus, *users: Trader) -> Outcome:
    """The fee job, for these users only (other tests share the database)."""
    return await recompute(db, bus, users=[u.id for u in users])


async def test_crossing_100k_pays_tier_2_on_the_next_fill(
    app: Starlette, services: Services, bus: CommandBus, db: asyncpg.Connection
) -> None:
    alice, bob = await trader(app, services, bus), await trader(app, services, bus)
    # 90,000 USDT of volume each (alice sells, bob buys): tier 1.
    first = await trade(alice, bob, "3", "30000")
    assert await fees_of(db, first["id"]) == (Decimal("0.0045"), Decimal("90"))
    # 30,000 more: 120,000 crosses 100k. This fill is still charged at tier 1 ...
    crossing = await trade(alice, bob, "1", "30000")
    assert crossing["fee"] == "0.0015"  # bob, taker: 0.15 % of 1 BTC
    assert await fees_of(db, crossing["id"]) == (Decimal("0.0015"), Decimal("30"))
    # ... and the next one at tier 2: taker 0.135 %, maker 0.09 %.
    assert await bob.me() == {
        "feeTier": 2,
        "feeTierOverride": False,
        "volume30d": "120000",
        "nextTier": {"tier": 3, "volumeNeeded": "880000"},
        "makerFee": "0.0009",
        "takerFee": "0.00135",
    }
    after = await trade(alice, bob, "0.5", "30000")
    assert after["fee"] == "0.000675"
    assert await fees_of(db, after["id"]) == (Decimal("0.000675"), Decimal("13.5"))
    assert (await fetch_user(services, alice.id)).fee_tier == 2
    assert await tier_row(db, bob.id) == (2, False, None)

    # The job agrees on the tiers; it only records the exact volumes. Rerun: nothing.
    done = await job(db, bus, alice, bob)
    assert (done.sent, done.changed, done.failed, done.stale) == (2, {}, [], [])
    assert await tier_row(db, bob.id) == (2, False, Decimal("135000"))
    again = await job(db, bus, alice, bob)
    assert (again.users, again.sent, again.changed) == (2, 0, {})

    # 31 days later the trades have left the window: the job lowers both tiers ...
    await db.execute(
        "UPDATE trades SET executed_at = executed_at - interval '31 days' "
        "WHERE buyer_user_id = $1 AND seller_user_id = $2",
        bob.id,
        alice.id,
    )
    await rebuild_candles(db)  # their candles move with them (check_invariants)
    lowered = await job(db, bus, alice, bob)
    assert lowered.changed == {alice.id: (2, 1), bob.id: (2, 1)}
    assert await tier_row(db, bob.id) == (1, False, Decimal(0))
    assert (await job(db, bus, alice, bob)).sent == 0
    # ... and the worker's running volume starts again from 0: tier 1 rates.
    small = await trade(alice, bob, "0.1", "30000")
    assert await fees_of(db, small["id"]) == (Decimal("0.00015"), Decimal("3"))
    me = await bob.me()
    assert (me["feeTier"], me["volume30d"], me["nextTier"]) == (
        1,
        "3000",
        {"tier": 2, "volumeNeeded": "97000"},
    )


SET_TIER = """mutation($id: ID!, $tier: Int!) { setFeeTier(userId: $id, tier: $tier) {
  user { feeTier feeTierOverride } errors { code field message } } }"""
CLEAR = """mutation($id: ID!) { clearFeeTierOverride(userId: $id) {
  user { feeTier feeTierOverride } errors { code field message } } }"""


async def test_an_admin_override_wins_over_volume_and_the_job(
    app: Starlette, services: Services, bus: CommandBus, db: asyncpg.Connection
) -> None:
    carol, dave = await trader(app, services, bus), await trader(app, services, bus)
    await trade(carol, dave, "4", "30000")  # 120,000 each: both on tier 2 at once
    assert (await fetch_user(services, carol.id)).fee_tier == 2
    pinned = await as_admin(app, services, SET_TIER, id=str(carol.id), tier=4)
    assert pinned["setFeeTier"] == {"user": {"feeTier": 4, "feeTierOverride": True}, "errors": []}
    pinned = await as_admin(app, services, SET_TIER, id=str(dave.id), tier=1)
    assert pinned["setFeeTier"]["user"] == {"feeTier": 1, "feeTierOverride": True}

    # Volume does not move a pinned tier: dave stays on tier 1 past 100k, carol on 4.
    fill = await trade(carol, dave, "0.1", "30000")
    assert await fees_of(db, fill["id"]) == (Decimal("0.00015"), Decimal("1.8"))
    done = await job(db, bus, carol, dave)
    assert (done.changed, done.pinned, done.failed) == ({}, 2, [])
    assert await tier_row(db, carol.id) == (4, True, Decimal("123000"))
    assert await tier_row(db, dave.id) == (1, True, Decimal("123000"))
    assert (await job(db, bus, carol, dave)).sent == 0  # rerun: nothing

    # An automatic change that reaches the worker after the pin changes nothing either.
    late = wire.SetFeeTier(
        user_id=dave.id, tier=2, automatic=True, volume_30d="123000", expected_tier=1
    )
    assert (await bus.send(late)).ok
    assert await tier_row(db, dave.id) == (1, True, Decimal("123000"))
    # One computed before a fill changed the tier is refused: the next run decides.
    stale = wire.SetFeeTier(
        user_id=carol.id, tier=1, automatic=True, volume_30d="0", expected_tier=2
    )
    refused = await bus.send(stale)
    assert refused.error is not None and refused.error.field == "expected_tier"
    assert await tier_row(db, carol.id) == (4, True, Decimal("123000"))

    # Cleared: the tier stays until the job (or a fill reaching a threshold) moves it.
    cleared = await as_admin(app, services, CLEAR, id=str(carol.id))
    assert cleared["clearFeeTierOverride"] == {
        "user": {"feeTier": 4, "feeTierOverride": False},
        "errors": [],
    }
    after = await job(db, bus, carol, dave)
    assert after.changed == {carol.id: (4, 2)}
    assert await tier_row(db, carol.id) == (2, False, Decimal("123000"))
    assert (await job(db, bus, carol, dave)).sent == 0
    # Dave's pin is cleared too: his next fill takes him to the tier his volume earns.
    await as_admin(app, services, CLEAR, id=str(dave.id))
    await trade(carol, dave, "0.1", "30000")
    assert (await fetch_user(services, dave.id)).fee_tier == 2
    fill = await trade(carol, dave, "0.1", "30000")
    assert await fees_of(db, fill["id"]) == (Decimal("0.000135"), Decimal("2.7"))


async def test_me_shows_the_fee_fields(app: Starlette, services: Services, bus: CommandBus) -> None:
    erin = await trader(app, services, bus)
    assert await erin.me() == {
        "feeTier": 1,
        "feeTierOverride": False,
        "volume30d": "0",
        "nextTier": {"tier": 2, "volumeNeeded": "100000"},
        "makerFee": "0.001",
        "takerFee": "0.0015",
    }
    await as_admin(app, services, SET_TIER, id=str(erin.id), tier=5)
    me = await erin.me()
    assert me == {
        "feeTier": 5,
        "feeTierOverride": True,
        "volume30d": "0",
        "nextTier": None,
        "makerFee": "0.0004",
        "takerFee": "0.0008",
    }


async def test_fee_schedule_is_public(app: Starlette) -> None:
    async with asgi_client(app) as client:
        body = await graphql(client, "{ feeSchedule { tier minVolume30d makerFee takerFee } }")
    assert body == {
        "data": {
            "feeSchedule": [
                {"tier": 1, "minVolume30d": "0", "makerFee": "0.001", "takerFee": "0.0015"},
                {"tier": 2, "minVolume30d": "100000", "makerFee": "0.0009", "takerFee": "0.00135"},
                {"tier": 3, "minVolume30d": "1000000", "makerFee": "0.0008", "takerFee": "0.0012"},
                {"tier": 4, "minVolume30d": "10000000", "makerFee": "0.0006", "takerFee": "0.001"},
                {"tier": 5, "minVolume30d": "50000000", "makerFee": "0.0004", "takerFee": "0.0008"},
            ]
        }
    }


async def test_tradegraph_fees_recompute(
    app: Starlette,
    services: Services,
    bus: CommandBus,
    settings: Settings,
    platform: Platform,
) -> None:
    frank, gina = await trader(app, services, bus), await trader(app, services, bus)
    await as_admin(app, services, SET_TIER, id=str(frank.id), tier=3)
    await as_admin(app, services, CLEAR, id=str(frank.id))  # tier 3, volume 0: earns 1

    def run() -> subprocess.CompletedProcess[str]:
        args = ["fees", "recompute", "--user", str(frank.id), "--user", str(gina.id)]
        return subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            env=process_env(settings),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    first = run()
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"user {frank.id}: tier 3 -> 1",
        "fee tiers: 2 users, 1 commands, 0 up, 1 down, 0 pinned by an admin, "
        "0 changed meanwhile, 0 failed",
    ]
    assert (await fetch_user(services, frank.id)).fee_tier == 1
    second = run()
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == [
        "fee tiers: 2 users, 0 commands, 0 up, 0 down, 0 pinned by an admin, "
        "0 changed meanwhile, 0 failed",
    ]


def test_the_daily_run_is_the_next_time_of_day_in_utc() -> None:
    at = datetime(2026, 12, 4, 0, 4, 59, tzinfo=UTC)
    assert next_run(at, "00:05") == datetime(2026, 12, 4, 0, 5, tzinfo=UTC)
    assert next_run(datetime(2026, 12, 4, 0, 5, tzinfo=UTC), "00:05") == datetime(
        2026, 12, 5, 0, 5, tzinfo=UTC
    )


async def test_a_restarted_worker_remembers_the_volume(
    app: Starlette,
    services: Services,
    bus: CommandBus,
    db: asyncpg.Connection,
    platform: Platform,
) -> None:
    hana, ivan = await trader(app, services, bus), await trader(app, services, bus)
    await trade(hana, ivan, "3", "30000")  # 90,000 each
    platform.stop("worker")
    await asyncio.to_thread(platform.start_worker)  # volumes read back from the trades
    await trade(hana, ivan, "0.5", "30000")  # 105,000: tier 2 from the next order on
    assert (await fetch_user(services, ivan.id)).fee_tier == 2
    fill = await trade(hana, ivan, "0.1", "30000")
    assert await fees_of(db, fill["id"]) == (Decimal("0.000135"), Decimal("2.7"))
