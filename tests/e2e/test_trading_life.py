"""The whole life of two traders through the real API and worker processes, with the gql
client over HTTP and both WebSocket subprotocols, and every subscription watching."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from gql.transport.websockets import WebsocketsTransport
from redis.asyncio import Redis

from app.kit.redis import Keys, create_redis
from app.services import Services
from tests.support.books import BookCopy, book_checksum
from tests.support.factories import create_admin, login
from tests.support.live import Api, Watch, subscribed
from tests.support.processes import Platform

pytestmark = pytest.mark.e2e

D = Decimal
PASSWORD = "correct horse battery"


@pytest.fixture
async def redis(services: Services) -> AsyncIterator[Redis]:
    client = create_redis(services.settings.redis_url or "")
    yield client
    await client.aclose()


PLACE = """mutation($input: PlaceOrderInput!) { placeOrder(input: $input) {
  order { id status filledQuantity remainingQuantity price quantity clientOrderId }
  fills { id orderId side price quantity fee feeAsset liquidity }
  errors { code field message } } }"""
AMEND = """mutation($input: AmendOrderInput!) { amendOrder(input: $input) {
  order { id quantity price status } errors { code field message } } }"""
CANCEL = """mutation($id: ID) { cancelOrder(id: $id) {
  order { id status cancelReason } errors { code field message } } }"""
BALANCES = "{ balances { asset available locked } }"
BOOK = """query($s: String!) { orderBook(symbol: $s, depth: 50) {
  sequence checksum bids { price quantity orders } asks { price quantity orders } } }"""


def balances(result: dict[str, Any]) -> dict[str, tuple[Decimal, Decimal]]:
    return {b["asset"]: (D(b["available"]), D(b["locked"])) for b in result["balances"]}


def order_input(
    symbol: str, side: str, quantity: str, price: str | None, **extra: Any
) -> dict[str, Any]:
    return {
        "input": {
            "symbol": symbol,
            "side": side,
            "type": "LIMIT" if price else "MARKET",
            "quantity": quantity,
            "price": price,
            **extra,
        }
    }


async def test_two_traders_from_sign_up_to_settled_fills(
    platform: Platform, services: Services, redis: Redis
) -> None:
    keys = Keys(services.settings.redis_prefix)
    admin = Api(platform, await login(services, await create_admin(services)))
    anonymous = Api(platform)

    # Sign up: KYC starts PENDING, and trading is refused until an admin approves.
    traders: dict[str, tuple[str, str]] = {}
    for name in ("alice", "bob"):
        suffix = f"{name}{id(traders)}"
        result = await anonymous(
            """mutation($input: RegisterInput!) { register(input: $input) {
              token user { id } errors { code } } }""",
            input={"email": f"{suffix}@example.com", "username": suffix, "password": PASSWORD},
        )
        assert result["register"]["errors"] == []
        traders[name] = (result["register"]["user"]["id"], result["register"]["token"])
    (alice_id, alice_token), (bob_id, bob_token) = traders["alice"], traders["bob"]
    alice, bob = Api(platform, alice_token), Api(platform, bob_token)
    early = await alice(PLACE, **order_input("BTC-USDT", "BUY", "0.1", "30000"))
    assert early["placeOrder"]["errors"] == [
        {
            "code": "KYC_REQUIRED",
            "field": None,
            "message": early["placeOrder"]["errors"][0]["message"],
        }
    ]
    for user_id in (alice_id, bob_id):
        approved = await admin(
            "mutation($u: ID!) { approveKyc(userId: $u) { user { kycStatus } errors { code } } }",
            u=user_id,
        )
        assert approved["approveKyc"]["user"]["kycStatus"] == "APPROVED"
    deposit = """mutation($u: ID!, $a: String!, $n: Decimal!) { deposit(userId: $u, asset: $a,
      amount: $n) { balance { asset available locked } errors { code } } }"""
    assert (await admin(deposit, u=alice_id, a="USDT", n="50000"))["deposit"]["balance"] == {
        "asset": "USDT",
        "available": "50000",
        "locked": "0",
    }
    await admin(deposit, u=bob_id, a="BTC", n="2")

    # Everyone watches: Alice her fills and orders, the public the book and the trades,
    # the admin the risk alerts — over both WebSocket subprotocols.
    transport_ws = WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL
    legacy_ws = WebsocketsTransport.APOLLO_SUBPROTOCOL
    fills = Watch(
        platform,
        "subscription { myFills { id orderId side price quantity fee feeAsset liquidity } }",
        alice_token,
        transport_ws,
    ).start()
    orders = Watch(
        platform, "subscription { myOrders { id status filledQuantity } }", alice_token, legacy_ws
    ).start()
    book = Watch(
        platform,
        """subscription { orderBook(symbol: "BTC-USDT", depth: 50) { type sequence
          prevSequence depth checksum
          bids { price quantity orders } asks { price quantity orders } } }""",
        None,
        legacy_ws,
    ).start()
    trades = Watch(
        platform,
        'subscription { trades(symbol: "BTC-USDT") { id price quantity takerSide } }',
        None,
        transport_ws,
    ).start()
    alerts = Watch(
        platform,
        "subscription { riskAlerts { id eventType severity } }",
        admin.token,
        transport_ws,
    ).start()
    await book.wait_for(1)
    await subscribed(redis, keys.user_channel(int(alice_id)), fills)
    await subscribed(redis, keys.trades_channel("BTC-USDT"), trades)
    await subscribed(redis, keys.risk_channel(), alerts)

    # Bob rests two asks at 30000; A first, then B.
    a = (await bob(PLACE, **order_input("BTC-USDT", "SELL", "1", "30000")))["placeOrder"]
    b = (await bob(PLACE, **order_input("BTC-USDT", "SELL", "0.5", "30000")))["placeOrder"]
    assert a["order"]["status"] == b["order"]["status"] == "PENDING"
    # Lowering A's quantity keeps its place at the front.
    amended = (await bob(AMEND, input={"id": a["order"]["id"], "quantity": "0.8"}))["amendOrder"]
    assert amended["order"] == {
        "id": a["order"]["id"],
        "quantity": "0.8",
        "price": "30000",
        "status": "PENDING",
    }

    # Alice takes 1 BTC at up to 30100: 0.8 from A, then 0.2 from B, at the makers' price.
    taken = (
        await alice(PLACE, **order_input("BTC-USDT", "BUY", "1", "30100", clientOrderId="alice-1"))
    )["placeOrder"]
    assert taken["errors"] == []
    assert taken["order"]["status"] == "FILLED"
    assert [
        (f["price"], f["quantity"], f["fee"], f["feeAsset"], f["liquidity"]) for f in taken["fills"]
    ] == [
        ("30000", "0.8", "0.0012", "BTC", "TAKER"),  # 0.15 % taker fee in BTC
        ("30000", "0.2", "0.0003", "BTC", "TAKER"),
    ]
    # Repeating the clientOrderId returns the original order and does nothing else.
    again = (
        await alice(PLACE, **order_input("BTC-USDT", "BUY", "1", "30100", clientOrderId="alice-1"))
    )["placeOrder"]
    assert again["order"]["id"] == taken["order"]["id"] and again["fills"] == []

    # Raising B's quantity sends it to the back, behind C placed after it.
    c = (await bob(PLACE, **order_input("BTC-USDT", "SELL", "0.3", "30000")))["placeOrder"]
    raised = (await bob(AMEND, input={"id": b["order"]["id"], "quantity": "0.7"}))["amendOrder"]
    assert raised["errors"] == [] and raised["order"]["quantity"] == "0.7"
    second = (await alice(PLACE, **order_input("BTC-USDT", "BUY", "0.3", "30000")))["placeOrder"]
    assert [f["orderId"] for f in second["fills"]] == [second["order"]["id"]]
    bob_fills = await bob(
        "{ fills(first: 10) { edges { node { orderId quantity fee feeAsset liquidity } } } }"
    )
    assert [e["node"] for e in bob_fills["fills"]["edges"]] == [
        {
            "orderId": c["order"]["id"],
            "quantity": "0.3",
            "fee": "9",
            "feeAsset": "USDT",
            "liquidity": "MAKER",
        },
        {
            "orderId": b["order"]["id"],
            "quantity": "0.2",
            "fee": "6",
            "feeAsset": "USDT",
            "liquidity": "MAKER",
        },
        {
            "orderId": a["order"]["id"],
            "quantity": "0.8",
            "fee": "24",
            "feeAsset": "USDT",
            "liquidity": "MAKER",
        },
    ]

    # Alice cannot see or cancel Bob's order; Bob cancels it.
    assert (await alice("query($id: ID!) { order(id: $id) { id } }", id=b["order"]["id"])) == {
        "order": None
    }
    theirs = (await alice(CANCEL, id=b["order"]["id"]))["cancelOrder"]
    assert [e["code"] for e in theirs["errors"]] == ["NOT_FOUND"]
    cancelled = (await bob(CANCEL, id=b["order"]["id"]))["cancelOrder"]
    assert (
        cancelled["order"]["status"] == "CANCELLED" and cancelled["order"]["cancelReason"] == "USER"
    )
    done = (await bob(AMEND, input={"id": a["order"]["id"], "quantity": "0.5"}))["amendOrder"]
    assert [e["code"] for e in done["errors"]] == ["ORDER_NOT_OPEN"]

    # Self-trade prevention: Alice's sell would meet her own bid; it is cancelled, and the
    # admin hears of it.
    bid = (await alice(PLACE, **order_input("BTC-USDT", "BUY", "0.1", "29000")))["placeOrder"]
    stp = (await alice(PLACE, **order_input("BTC-USDT", "SELL", "0.1", "29000")))["placeOrder"]
    assert stp["order"]["status"] == "CANCELLED" and stp["fills"] == []
    (alert,) = await alerts.wait_for(1)
    assert alert["riskAlerts"]["eventType"] == "SUSPICIOUS_ACTIVITY"
    assert alert["riskAlerts"]["severity"] == "LOW"
    await alice(CANCEL, id=bid["order"]["id"])

    # Balances, exact to 1e-8. Alice paid 30000 + 9000 for 1.3 BTC less 0.00195 in fees.
    assert balances(await alice(BALANCES)) == {
        "BTC": (D("1.29805"), D("0")),
        "USDT": (D("11000"), D("0")),
    }
    assert balances(await bob(BALANCES)) == {
        "BTC": (D("0.7"), D("0")),
        "USDT": (D("38961"), D("0")),  # 39000 less 0.10 % maker fees
    }

    # The subscriptions saw it all, in order.
    fill_items = await fills.wait_for(3)
    assert [
        (f["myFills"]["orderId"], f["myFills"]["quantity"], f["myFills"]["liquidity"])
        for f in fill_items
    ] == [
        (taken["order"]["id"], "0.8", "TAKER"),
        (taken["order"]["id"], "0.2", "TAKER"),
        (second["order"]["id"], "0.3", "TAKER"),
    ]
    trade_items = await trades.wait_for(3)
    assert [t["trades"]["quantity"] for t in trade_items] == ["0.8", "0.2", "0.3"]
    order_items = await orders.wait_for(1)
    assert taken["order"]["id"] in {o["myOrders"]["id"] for o in order_items}
    assert {"id": taken["order"]["id"], "status": "FILLED", "filledQuantity": "1"} in [
        o["myOrders"] for o in order_items
    ]

    # Applying the book's updates on its snapshot, as the README's sync procedure says (each
    # DELTA follows the last sequence; the checksum agrees), gives the book the query returns.
    final = (await anonymous(BOOK, s="BTC-USDT"))["orderBook"]
    updates = await book.wait_until(
        lambda items: bool(items) and items[-1]["orderBook"]["sequence"] >= final["sequence"]
    )
    copy = BookCopy()
    for update in updates:
        copy.apply(update["orderBook"])
    assert copy.kinds[0] == "SNAPSHOT" and set(copy.kinds[1:]) == {"DELTA"}
    assert copy.sequence == final["sequence"]
    assert copy.equals(final)
    assert book_checksum(final["bids"], final["asks"]) == final["checksum"]

    for watch in (fills, orders, book, trades, alerts):
        await watch.stop()
