"""Pre-trade risk checks and circuit breakers through the real API, worker and database:
the exact refusals, the automatic halt with its risk event and alert, cancels while halted,
the automatic and the manual resume, and a halt that survives a worker restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from gql.transport.websockets import WebsocketsTransport
from redis.asyncio import Redis

from app.kit.bus import CommandBus
from app.kit.redis import Keys, create_redis
from app.services import Services
from tests.support.exchange import clear_books
from tests.support.factories import create_admin, create_user, login
from tests.support.live import Api, Watch, subscribed
from tests.support.processes import Platform

pytestmark = pytest.mark.e2e

SYMBOL = "ETH-USDT"
PLACE = """mutation($input: PlaceOrderInput!) { placeOrder(input: $input) {
  order { id status } fills { price quantity } errors { code field message } } }"""
CANCEL = """mutation($id: ID) { cancelOrder(id: $id) {
  order { id status } errors { code field message } } }"""
LIMITS = """mutation($s: String!, $input: MarketRiskLimitsInput!) {
  setMarketRiskLimits(symbol: $s, input: $input) {
    limits { symbol priceBandPercent circuitBreakerPercent circuitBreakerWindowSeconds
      circuitBreakerCooldownSeconds maxOrderQuantity maxOrderNotional haltedUntil }
    errors { code field message } } }"""
MARKET = """query($s: String!) { market(symbol: $s) { status } }"""
RISK_EVENTS = """query { riskEvents(first: 20) { edges { node {
  id eventType severity description metadata user { id } } } } }"""


@pytest.fixture
async def redis(services: Services) -> AsyncIterator[Redis]:
    client = create_redis(services.settings.redis_url or "")
    yield client
    await client.aclose()


@pytest.fixture
async def admin(platform: Platform, services: Services, bus: CommandBus) -> AsyncIterator[Api]:
    # An empty book to start from: other tests leave orders resting on the shared market.
    await clear_books(bus, (SYMBOL,))
    api = Api(platform, await login(services, await create_admin(services)))
    yield api
    # The other tests share the market: its band and breaker go off again, and a halt ends.
    await api(LIMITS, s=SYMBOL, input={"maxOrderQuantity": "10000", "maxOrderNotional": "10000000"})
    await clear_books(bus)
    status = (await api(MARKET, s=SYMBOL))["market"]["status"]
    if status == "HALTED":
        await api(
            "mutation($s: String!) { resumeMarket(symbol: $s) { errors { code } } }", s=SYMBOL
        )


async def trader(platform: Platform, services: Services, admin: Api) -> tuple[Api, str]:
    user = await create_user(services, kyc_status="approved")
    for asset, amount in (("ETH", "1000"), ("USDT", "10000000")):
        await admin(
            """mutation($u: ID!, $a: String!, $n: Decimal!) {
              deposit(userId: $u, asset: $a, amount: $n) { errors { code } } }""",
            u=str(user.id),
            a=asset,
            n=amount,
        )
    return Api(platform, await login(services, user)), str(user.id)


def order(side: str, quantity: str, price: str | None = None) -> dict[str, Any]:
    kind = "LIMIT" if price is not None else "MARKET"
    body: dict[str, Any] = {"symbol": SYMBOL, "side": side, "type": kind, "quantity": quantity}
    if price is not None:
        body["price"] = price
    return {"input": body}


async def trade_at(seller: Api, buyer: Api, price: str, quantity: str = "1") -> dict[str, Any]:
    sold = (await seller(PLACE, **order("SELL", quantity, price)))["placeOrder"]
    assert sold["errors"] == [], sold
    bought: dict[str, Any] = (await buyer(PLACE, **order("BUY", quantity, price)))["placeOrder"]
    return bought


async def wait_status(api: Api, status: str, seconds: float = 10.0) -> None:
    for _ in range(int(seconds * 10)):
        if (await api(MARKET, s=SYMBOL))["market"]["status"] == status:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{SYMBOL} did not become {status} within {seconds} s")


async def test_price_band_position_limit_and_order_size_refusals_have_their_exact_messages(
    platform: Platform, services: Services, admin: Api
) -> None:
    (seller, _), (buyer, buyer_id) = (
        await trader(platform, services, admin),
        await trader(platform, services, admin),
    )
    assert (await trade_at(seller, buyer, "2000"))["fills"] == [{"price": "2000", "quantity": "1"}]
    set_limits = await admin(
        LIMITS,
        s=SYMBOL,
        input={"priceBandPercent": "10", "maxOrderQuantity": "500", "maxOrderNotional": "2000000"},
    )
    assert set_limits["setMarketRiskLimits"]["errors"] == []
    assert set_limits["setMarketRiskLimits"]["limits"]["priceBandPercent"] == "10"
    refused = (await buyer(PLACE, **order("BUY", "1", "2200.01")))["placeOrder"]
    assert refused["errors"] == [
        {
            "code": "RISK_REJECTED",
            "field": "price",
            "message": "price 2200.01 is outside the price band: ETH-USDT accepts 1800 to 2200 "
            "(10 % around the last trade 2000)",
        }
    ]
    too_big = (await buyer(PLACE, **order("BUY", "500.0001", "2000")))["placeOrder"]
    assert too_big["errors"] == [
        {
            "code": "RISK_REJECTED",
            "field": "quantity",
            "message": "quantity 500.0001 is above the largest order on ETH-USDT, 500 ETH",
        }
    ]
    # The buyer holds 1000.9985 ETH (the 1 bought, less its fee); a personal limit of 1010
    # leaves room for 8 more, not 10.
    limited = await admin(
        """mutation($u: ID!) { setPositionLimit(userId: $u, asset: "ETH", maxPosition: "1010") {
          positionLimit { userId asset maxPosition } errors { code } } }""",
        u=buyer_id,
    )
    assert limited["setPositionLimit"]["positionLimit"] == {
        "userId": buyer_id,
        "asset": "ETH",
        "maxPosition": "1010",
    }
    assert (await buyer(PLACE, **order("BUY", "8", "1900")))["placeOrder"]["errors"] == []
    over = (await buyer(PLACE, **order("BUY", "2", "1900")))["placeOrder"]
    assert over["errors"] == [
        {
            "code": "RISK_REJECTED",
            "field": "quantity",
            "message": "position limit: buying 2 ETH would take your ETH position (holdings "
            "plus open buys) to 1010.9985, above the limit of 1010 ETH",
        }
    ]


async def test_three_refusals_in_a_minute_are_a_risk_event(
    platform: Platform, services: Services, admin: Api, db: asyncpg.Connection
) -> None:
    (user, user_id) = await trader(platform, services, admin)
    await admin(
        'mutation($u: ID!) { suspendTrading(userId: $u, reason: "review") { errors { code } } }',
        u=user_id,
    )
    for _ in range(3):
        refused = (await user(PLACE, **order("BUY", "1", "1000")))["placeOrder"]
        assert refused["errors"][0]["code"] == "RISK_REJECTED"
        assert refused["errors"][0]["message"] == (
            "trading is suspended for this account; cancels still work"
        )
    rows = await db.fetch(
        "SELECT event_type, severity, metadata->>'rule' AS rule, metadata->>'refusals' AS n "
        "FROM risk_events WHERE user_id = $1",
        int(user_id),
    )
    assert [(r["event_type"], r["severity"]) for r in rows] == [("SUSPICIOUS_ACTIVITY", "MEDIUM")]
    assert (rows[0]["rule"], rows[0]["n"]) == ("trading_suspended", "3")
    await admin("mutation($u: ID!) { reinstateTrading(userId: $u) { errors { code } } }", u=user_id)
    assert (await user(PLACE, **order("BUY", "1", "1000")))["placeOrder"]["errors"] == []


async def test_the_circuit_breaker_halts_alerts_allows_cancels_and_resumes(
    platform: Platform,
    services: Services,
    admin: Api,
    redis: Redis,
    db: asyncpg.Connection,
) -> None:
    keys = Keys(services.settings.redis_prefix)
    alerts = Watch(
        platform,
        "subscription { riskAlerts { id eventType severity description metadata } }",
        admin.token,
        WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL,
    ).start()
    await subscribed(redis, keys.risk_channel(), alerts)
    breaker = {
        "circuitBreakerPercent": "10",
        "circuitBreakerWindowSeconds": 60,
        "circuitBreakerCooldownSeconds": 2,
    }
    assert (await admin(LIMITS, s=SYMBOL, input=breaker))["setMarketRiskLimits"]["errors"] == []
    (seller, _), (buyer, _) = (
        await trader(platform, services, admin),
        await trader(platform, services, admin),
    )
    await trade_at(seller, buyer, "3000")
    await trade_at(seller, buyer, "3290")  # +9.67 %
    resting = (await buyer(PLACE, **order("BUY", "1", "3000")))["placeOrder"]["order"]
    tripped = await trade_at(seller, buyer, "3310")  # 3000 -> 3310: 10.33 % within 60 s
    assert tripped["fills"] == [{"price": "3310", "quantity": "1"}]
    await wait_status(admin, "HALTED", 2)

    (alert,) = [a for a in await alerts.wait_for(1) if a["riskAlerts"]["eventType"] == "TRADE"]
    assert alert["riskAlerts"]["severity"] == "CRITICAL"
    assert alert["riskAlerts"]["metadata"]["rule"] == "circuit_breaker"
    assert alert["riskAlerts"]["metadata"]["move_pct"] == "10.3333"
    row = await db.fetchrow(
        "SELECT user_id, event_type, severity, description, metadata->>'symbol' AS symbol "
        "FROM risk_events WHERE id = $1",
        int(alert["riskAlerts"]["id"]),
    )
    assert row is not None
    assert (row["user_id"], row["event_type"], row["severity"], row["symbol"]) == (
        None,
        "TRADE",
        "CRITICAL",
        SYMBOL,
    )
    assert row["description"].startswith("ETH-USDT halted by its circuit breaker")

    # Halted: a new order is refused, a cancel works, the resting order stayed.
    refused = (await buyer(PLACE, **order("BUY", "1", "3300")))["placeOrder"]
    assert refused["errors"][0]["code"] == "MARKET_HALTED"
    cancelled = (await buyer(CANCEL, id=resting["id"]))["cancelOrder"]
    assert cancelled["order"]["status"] == "CANCELLED"
    # The cool-down of 2 s ends by itself.
    await wait_status(admin, "TRADING")

    # Tripped again; an admin resumes it at once.
    await trade_at(seller, buyer, "3300")
    await trade_at(seller, buyer, "3620")
    await trade_at(seller, buyer, "3640")
    await wait_status(admin, "HALTED", 2)
    resumed = await admin(
        'mutation { resumeMarket(symbol: "ETH-USDT") { market { status } errors { code } } }'
    )
    assert resumed["resumeMarket"]["market"]["status"] == "TRADING"
    await alerts.stop_quietly()


async def test_a_breaker_halt_survives_a_worker_restart(
    platform: Platform, services: Services, admin: Api, db: asyncpg.Connection
) -> None:
    breaker = {"circuitBreakerPercent": "5", "circuitBreakerCooldownSeconds": 600}
    assert (await admin(LIMITS, s=SYMBOL, input=breaker))["setMarketRiskLimits"]["errors"] == []
    (seller, _), (buyer, _) = (
        await trader(platform, services, admin),
        await trader(platform, services, admin),
    )
    await trade_at(seller, buyer, "5000")
    await trade_at(seller, buyer, "5300")
    await wait_status(admin, "HALTED", 2)
    until = await db.fetchval("SELECT halted_until FROM markets WHERE symbol = $1", SYMBOL)
    assert until is not None
    platform.stop("worker")
    await asyncio.to_thread(platform.start_worker)
    refused = (await buyer(PLACE, **order("BUY", "1", "5300")))["placeOrder"]
    assert refused["errors"][0]["code"] == "MARKET_HALTED"
    limits = await admin(
        """query { marketRiskLimits(symbol: "ETH-USDT") { haltedUntil
          circuitBreakerCooldownSeconds } }"""
    )
    assert limits["marketRiskLimits"]["circuitBreakerCooldownSeconds"] == 600
    assert limits["marketRiskLimits"]["haltedUntil"] is not None
