"""The manipulation detector as a real process (`tradegraph risk-monitor`) beside the real
API and worker: patterns driven through GraphQL become one risk_events row each and one
riskAlerts message; a restarted monitor neither repeats nor misses a finding."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from gql.transport.websockets import WebsocketsTransport

from app.services import Services
from tests.support.factories import create_admin, create_user, login
from tests.support.live import Api, Watch
from tests.support.processes import Platform

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("empty_books_after")]

ALERTS = "subscription { riskAlerts { id eventType severity description } }"
DEPOSIT = """mutation($u: ID!, $a: String!, $n: Decimal!) { deposit(userId: $u, asset: $a,
  amount: $n) { errors { code } } }"""
WITHDRAW = """mutation($u: ID!, $a: String!, $n: Decimal!) { withdraw(userId: $u, asset: $a,
  amount: $n) { errors { code } } }"""
PLACE = """mutation($input: PlaceOrderInput!) { placeOrder(input: $input) {
  order { id status } errors { code } } }"""


TIGHT = {
    "TRADEGRAPH_RISK_WASH_TRADING_COUNT": "3",
    "TRADEGRAPH_RISK_ORDER_BURST_ORDERS": "10",
    "TRADEGRAPH_RISK_ORDER_BURST_WINDOW_SECONDS": "10",
    "TRADEGRAPH_RISK_CANCEL_TO_FILL_MIN_CANCELS": "8",
    "TRADEGRAPH_RISK_CANCEL_TO_FILL_RATIO": "5",
    "TRADEGRAPH_RISK_WASH_PAIR_MIN_TRADES": "4",
}


@pytest.fixture
def monitor(platform: Platform) -> Iterator[Platform]:
    platform.env.update(TIGHT)
    platform.start("risk-monitor", "risk-monitor")
    try:
        yield platform
    finally:
        if "risk-monitor" in platform.procs:
            platform.stop("risk-monitor")
        for name in TIGHT:
            platform.env.pop(name, None)


async def alert_of(alerts: Watch, row_id: int) -> list[dict[str, Any]]:
    """The alerts about one row (other tests' alerts may arrive on the same subscription)."""
    for _ in range(100):
        mine = [a for a in alerts.items if a["riskAlerts"]["id"] == str(row_id)]
        if mine:
            return mine
        await alerts.wait_for(0)
        await asyncio.sleep(0.05)
    raise AssertionError(f"no alert for risk event {row_id}")


async def rows(db: asyncpg.Connection, user_id: int, rule: str) -> list[dict[str, Any]]:
    found = await db.fetch(
        "SELECT id, user_id, event_type, severity, description, metadata FROM risk_events "
        "WHERE user_id = $1 AND metadata->>'rule' = $2 ORDER BY id",
        user_id,
        rule,
    )
    return [{**dict(r), "metadata": json.loads(r["metadata"])} for r in found]


async def wait_rows(
    db: asyncpg.Connection, user_id: int, rule: str, count: int, within: float = 20.0
) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        found = await rows(db, user_id, rule)
        if len(found) >= count or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.1)


async def test_large_withdrawal_once_across_a_restart(
    monitor: Platform, services: Services, db: asyncpg.Connection
) -> None:
    admin = Api(monitor, await login(services, await create_admin(services)))
    user = await create_user(services)
    alerts = Watch(monitor, ALERTS, admin.token, WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL)
    alerts.start()
    await asyncio.sleep(1.0)  # the subscription is up
    assert (await admin(DEPOSIT, u=str(user.id), a="BTC", n="100"))["deposit"]["errors"] == []
    for amount in ("9.5", "12.5"):  # below, then at least the 10 BTC default
        done = await admin(WITHDRAW, u=str(user.id), a="BTC", n=amount)
        assert done["withdraw"]["errors"] == []
    (row,) = await wait_rows(db, user.id, "large_withdrawal", 1)
    assert row["event_type"] == "WITHDRAWAL" and row["severity"] == "HIGH"
    assert row["description"] == "large withdrawal: 12.5 BTC (at least 10 BTC)"
    meta = row["metadata"]
    assert meta["asset"] == "BTC" and meta["amount"] == "12.5"
    assert meta["threshold_amount"] == "10"
    assert meta["dedupe_key"].startswith("large_withdrawal:")
    (alert,) = await alert_of(alerts, row["id"])
    assert alert["riskAlerts"] == {
        "id": str(row["id"]),
        "eventType": "WITHDRAWAL",
        "severity": "HIGH",
        "description": row["description"],
    }

    # Killed mid-stream: what it had seen is not reported again; what came while it was
    # down is reported once when it is back.
    monitor.kill("risk-monitor")
    assert (await admin(WITHDRAW, u=str(user.id), a="BTC", n="20"))["withdraw"]["errors"] == []
    monitor.start("risk-monitor", "risk-monitor")
    found = await wait_rows(db, user.id, "large_withdrawal", 2)
    await asyncio.sleep(2.0)  # time to (wrongly) report anything twice
    found = await rows(db, user.id, "large_withdrawal")
    assert [r["metadata"]["amount"] for r in found] == ["12.5", "20"]
    ids = {str(r["id"]) for r in found}
    second = [a for a in await alerts.wait_for(2) if a["riskAlerts"]["id"] in ids]
    for _ in range(50):  # other tests' alerts may come in between
        if len(second) == 2:
            break
        await asyncio.sleep(0.1)
        second = [a for a in alerts.items if a["riskAlerts"]["id"] in ids]
    assert [a["riskAlerts"]["id"] for a in second] == [str(r["id"]) for r in found]
    await alerts.stop()


async def test_repeated_self_trades_are_wash_trading(
    monitor: Platform, services: Services, db: asyncpg.Connection
) -> None:
    admin = Api(monitor, await login(services, await create_admin(services)))
    user = await create_user(services)
    approve = "mutation($u: ID!) { approveKyc(userId: $u) { errors { code } } }"
    assert (await admin(approve, u=str(user.id)))["approveKyc"]["errors"] == []
    await admin(DEPOSIT, u=str(user.id), a="USDT", n="100000")
    await admin(DEPOSIT, u=str(user.id), a="BTC", n="10")
    trader = Api(monitor, await login(services, user))
    alerts = Watch(monitor, ALERTS, admin.token, WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL)
    alerts.start()
    await asyncio.sleep(1.0)

    def order(side: str) -> dict[str, Any]:
        return {
            "input": {
                "symbol": "BTC-USDT",
                "side": side,
                "type": "LIMIT",
                "quantity": "0.01",
                "price": "30000",
            }
        }

    bid = (await trader(PLACE, **order("BUY")))["placeOrder"]
    assert bid["errors"] == []
    sells = []
    for _ in range(3):
        sell = (await trader(PLACE, **order("SELL")))["placeOrder"]
        assert sell["order"]["status"] == "CANCELLED"
        sells.append(int(sell["order"]["id"]))
    (row,) = await wait_rows(db, user.id, "wash_trading", 1)
    assert row["event_type"] == "SUSPICIOUS_ACTIVITY" and row["severity"] == "MEDIUM"
    assert row["metadata"]["order_ids"] == sells
    assert row["metadata"]["count"] == 3 and row["metadata"]["threshold_count"] == 3
    assert row["metadata"]["window_seconds"] == 3600
    items = await alerts.wait_for(4)  # the engine's three LOW self_trade events, then ours
    ours = [a["riskAlerts"] for a in items if a["riskAlerts"]["id"] == str(row["id"])]
    assert ours == [
        {
            "id": str(row["id"]),
            "eventType": "SUSPICIOUS_ACTIVITY",
            "severity": "MEDIUM",
            "description": row["description"],
        }
    ]
    await alerts.stop()


async def trader_of(monitor: Platform, services: Services, admin: Api) -> tuple[int, Api]:
    user = await create_user(services)
    approve = "mutation($u: ID!) { approveKyc(userId: $u) { errors { code } } }"
    assert (await admin(approve, u=str(user.id)))["approveKyc"]["errors"] == []
    await admin(DEPOSIT, u=str(user.id), a="USDT", n="100000")
    return user.id, Api(monitor, await login(services, user))


def bid(price: str) -> dict[str, Any]:
    return {
        "input": {
            "symbol": "ETH-USDT",
            "side": "BUY",
            "type": "LIMIT",
            "quantity": "0.1",
            "price": price,
        }
    }


async def test_orders_stacked_and_cancelled_together_are_layering(
    monitor: Platform, services: Services, db: asyncpg.Connection
) -> None:
    admin = Api(monitor, await login(services, await create_admin(services)))
    user_id, trader = await trader_of(monitor, services, admin)
    alerts = Watch(monitor, ALERTS, admin.token, WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL)
    alerts.start()
    await asyncio.sleep(1.0)
    ids = []
    for i in range(5):
        placed = (await trader(PLACE, **bid(f"{1900 - i}")))["placeOrder"]
        assert placed["errors"] == []
        ids.append(int(placed["order"]["id"]))
    done = await trader(
        'mutation { cancelAllOrders(symbol: "ETH-USDT") { cancelledCount errors { code } } }'
    )
    assert done["cancelAllOrders"]["cancelledCount"] == 5
    (row,) = await wait_rows(db, user_id, "layering", 1)
    assert row["event_type"] == "SUSPICIOUS_ACTIVITY" and row["severity"] == "HIGH"
    meta = row["metadata"]
    assert sorted(meta["order_ids"]) == ids
    assert (meta["symbol"], meta["side"], meta["count"], meta["threshold_orders"]) == (
        "ETH-USDT",
        "BUY",
        5,
        5,
    )
    (alert,) = await alert_of(alerts, row["id"])
    assert alert["riskAlerts"]["id"] == str(row["id"])
    assert await rows(db, user_id, "order_burst") == []
    await alerts.stop()


async def test_too_many_orders_in_the_window_are_an_order_burst(
    monitor: Platform, services: Services, db: asyncpg.Connection
) -> None:
    admin = Api(monitor, await login(services, await create_admin(services)))
    user_id, trader = await trader_of(monitor, services, admin)
    alerts = Watch(monitor, ALERTS, admin.token, WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL)
    alerts.start()
    await asyncio.sleep(1.0)
    ids = []
    for i in range(11):
        placed = (await trader(PLACE, **bid(f"{1800 - i}")))["placeOrder"]
        assert placed["errors"] == []
        ids.append(int(placed["order"]["id"]))
    (row,) = await wait_rows(db, user_id, "order_burst", 1)
    assert row["event_type"] == "SUSPICIOUS_ACTIVITY" and row["severity"] == "MEDIUM"
    meta = row["metadata"]
    assert meta["order_ids"] == ids
    assert (meta["count"], meta["threshold_orders"], meta["window_seconds"]) == (11, 10, 10.0)
    (alert,) = await alert_of(alerts, row["id"])
    assert alert["riskAlerts"]["id"] == str(row["id"])
    await trader('mutation { cancelAllOrders(symbol: "ETH-USDT") { cancelledCount } }')
    await alerts.stop()


async def test_cancelling_without_fills_is_cancel_to_fill(
    monitor: Platform, services: Services, db: asyncpg.Connection
) -> None:
    admin = Api(monitor, await login(services, await create_admin(services)))
    user_id, trader = await trader_of(monitor, services, admin)
    for i in range(8):
        placed = (await trader(PLACE, **bid(f"{1700 - i}")))["placeOrder"]
        done = await trader(
            "mutation($id: ID) { cancelOrder(id: $id) { errors { code } } }",
            id=placed["order"]["id"],
        )
        assert done["cancelOrder"]["errors"] == []
    (row,) = await wait_rows(db, user_id, "cancel_to_fill", 1)
    assert row["event_type"] == "SUSPICIOUS_ACTIVITY" and row["severity"] == "LOW"
    meta = row["metadata"]
    assert (meta["cancels"], meta["fills"], meta["threshold_min_cancels"]) == (8, 0, 8)
    assert meta["threshold_ratio"] == 5 and meta["window_seconds"] == 3600


async def test_large_orders_cancelled_at_once_are_spoofing(
    monitor: Platform, services: Services, db: asyncpg.Connection
) -> None:
    admin = Api(monitor, await login(services, await create_admin(services)))
    user_id, trader = await trader_of(monitor, services, admin)
    for i in range(10):  # the account's (and the market's) typical size: 0.1
        assert (await trader(PLACE, **bid(f"{1600 - i}")))["placeOrder"]["errors"] == []
    big = []
    for i in range(3):
        entry = bid(f"{1650 + i}")
        entry["input"]["quantity"] = "2"
        placed = (await trader(PLACE, **entry))["placeOrder"]
        big.append(int(placed["order"]["id"]))
        await trader(
            "mutation($id: ID) { cancelOrder(id: $id) { errors { code } } }",
            id=placed["order"]["id"],
        )
    (row,) = await wait_rows(db, user_id, "spoofing", 1)
    assert row["event_type"] == "SUSPICIOUS_ACTIVITY" and row["severity"] == "HIGH"
    meta = row["metadata"]
    assert meta["order_ids"] == big and meta["symbol"] == "ETH-USDT"
    assert (meta["count"], meta["size_multiple"], meta["threshold_count"]) == (3, 10, 3)
    await trader('mutation { cancelAllOrders(symbol: "ETH-USDT") { cancelledCount } }')


async def test_two_accounts_trading_with_each_other_are_a_wash_pair(
    monitor: Platform, services: Services, db: asyncpg.Connection
) -> None:
    admin = Api(monitor, await login(services, await create_admin(services)))
    seller_id, seller = await trader_of(monitor, services, admin)
    buyer_id, buyer = await trader_of(monitor, services, admin)
    await admin(DEPOSIT, u=str(seller_id), a="ETH", n="10")
    for _ in range(4):
        ask = bid("2000")
        ask["input"]["side"] = "SELL"
        assert (await seller(PLACE, **ask))["placeOrder"]["errors"] == []
        take = bid("2000")
        take["input"]["timeInForce"] = "IOC"
        assert (await buyer(PLACE, **take))["placeOrder"]["order"]["status"] == "FILLED"
    low, high = sorted((seller_id, buyer_id))
    (row,) = await wait_rows(db, low, "wash_pair", 1)
    assert row["event_type"] == "SUSPICIOUS_ACTIVITY" and row["severity"] == "HIGH"
    meta = row["metadata"]
    assert meta["counterparty_user_id"] == high
    assert (meta["count"], meta["user_trades"], meta["counterparty_trades"]) == (4, 4, 4)
    assert meta["threshold_min_trades"] == 4 and meta["threshold_share_percent"] == 80
