"""Every trading refusal of the brief through the real API, and a book subscription that
resynchronises by itself when its Redis connection is lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport
from redis.asyncio import Redis

from app.kit.bus import CommandBus
from app.kit.redis import Keys, create_redis
from app.services import Services
from tests.support.exchange import deposit, place
from tests.support.factories import create_admin, create_user, login
from tests.support.live import Api, Watch, listening
from tests.support.processes import Platform

pytestmark = pytest.mark.e2e

PLACE = """mutation($input: PlaceOrderInput!) { placeOrder(input: $input) {
  order { id status } fills { id } errors { code field message } } }"""


def order(symbol: str, side: str, quantity: str, price: str | None, **extra: Any) -> dict[str, Any]:
    kind = "LIMIT" if price else "MARKET"
    return {
        "input": {
            "symbol": symbol,
            "side": side,
            "type": kind,
            "quantity": quantity,
            "price": price,
            **extra,
        }
    }


def codes(payload: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(error["code"], error["field"]) for error in payload["errors"]]


@pytest.fixture
async def redis(services: Services) -> AsyncIterator[Redis]:
    client = create_redis(services.settings.redis_url or "")
    yield client
    await client.aclose()


async def test_each_refusal_has_its_code_and_changes_nothing(
    platform: Platform, services: Services, bus: CommandBus
) -> None:
    user = await create_user(services, kyc_status="approved")
    trader = Api(platform, await login(services, user))
    admin = Api(platform, await login(services, await create_admin(services)))
    await deposit(bus, user.id, "USDT", "10000")
    await deposit(bus, user.id, "ETH", "1")
    try:

        async def refused(**variables: Any) -> list[tuple[str, str | None]]:
            payload = (await trader(PLACE, **variables))["placeOrder"]
            assert payload["order"] is None
            return codes(payload)

        assert await refused(**order("ETH-USDT", "BUY", "10", "2000")) == [
            ("INSUFFICIENT_BALANCE", None)
        ]
        assert await refused(**order("ETH-USDT", "BUY", "0.00001", "100")) == [
            ("INVALID_INPUT", "quantity")
        ]
        assert await refused(**order("ETH-USDT", "BUY", "1", "100.001")) == [
            ("INVALID_INPUT", "price")
        ]
        assert await refused(**order("ETH-USDT", "BUY", "1", None, postOnly=True)) == [
            ("INVALID_INPUT", "postOnly")
        ]
        assert await refused(**order("NOPE-USDT", "BUY", "1", "1")) == [("INVALID_INPUT", "symbol")]
        assert await refused(**order("ETH-USDT", "BUY", "1", "100", clientOrderId="no spaces")) == [
            ("INVALID_INPUT", "clientOrderId")
        ]
        limit_without_price = {
            "input": {"symbol": "ETH-USDT", "side": "BUY", "type": "LIMIT", "quantity": "1"}
        }
        assert await refused(**limit_without_price) == [("INVALID_INPUT", "price")]

        # Post-only would take the resting ask → refused, nothing rests.
        ask = await trader(PLACE, **order("ETH-USDT", "SELL", "0.5", "900"))
        assert ask["placeOrder"]["order"]["status"] == "PENDING"
        assert await refused(**order("ETH-USDT", "BUY", "0.1", "900", postOnly=True)) == [
            ("POST_ONLY_WOULD_TAKE", "price")
        ]

        # A halted market refuses orders until it is resumed.
        halted = await admin(
            'mutation { haltMarket(symbol: "ETH-USDT", reason: "maintenance") '
            "{ market { status } errors { code } } }"
        )
        assert halted["haltMarket"]["market"]["status"] == "HALTED"
        try:
            assert await refused(**order("ETH-USDT", "BUY", "0.1", "100")) == [
                ("MARKET_HALTED", "symbol")
            ]
        finally:
            resumed = await admin(
                'mutation { resumeMarket(symbol: "ETH-USDT") { market { status } } }'
            )
        assert resumed["resumeMarket"]["market"]["status"] == "TRADING"

        # Pre-trade risk: at most max_open_orders_per_user resting orders.
        limit = services.settings.max_open_orders_per_user
        open_now = 1
        for start in range(0, limit - open_now, 100):
            batch = range(start, min(start + 100, limit - open_now))
            replies = await asyncio.gather(
                *(place(bus, user.id, "ETH-USDT", "BUY", "0.1", f"{50 + n % 40}") for n in batch)
            )
            assert all(reply["ok"] for reply in replies)
        assert await refused(**order("ETH-USDT", "BUY", "0.1", "60")) == [("RISK_REJECTED", None)]

        unknown = await trader(
            'mutation { cancelOrder(id: "999999999999") { order { id } errors { code field } } }'
        )
        assert codes(unknown["cancelOrder"]) == [("NOT_FOUND", "id")]
        # Balances are exactly what the resting orders hold; nothing else moved.
        balances = await trader("{ balances { asset available locked } }")
        reserved = sum(Decimal("0.1") * (50 + n % 40) for n in range(limit - open_now))
        usdt = next(b for b in balances["balances"] if b["asset"] == "USDT")
        assert Decimal(usdt["locked"]) == reserved
        assert Decimal(usdt["available"]) == Decimal("10000") - reserved
    finally:
        reply = await bus.submit("cancel_all", {"user_id": user.id})
        assert reply["ok"]


async def test_book_subscription_resyncs_after_its_redis_connection_is_killed(
    platform: Platform, services: Services, bus: CommandBus, redis: Redis
) -> None:
    keys = Keys(services.settings.redis_prefix)
    user = await create_user(services, kyc_status="approved")
    await deposit(bus, user.id, "BTC", "1")
    book = Watch(
        platform,
        'subscription { orderBook(symbol: "BTC-USDT", depth: 5) { type sequence } }',
        None,
        WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL,
    ).start()
    try:
        (first,) = await book.wait_for(1)
        assert first["orderBook"]["type"] == "SNAPSHOT"
        await listening(redis, keys.book_channel("BTC-USDT"))

        killed = 0
        for client in await redis.client_list():
            if client.get("name") == keys.pubsub_client_name():
                killed += await redis.client_kill_filter(_id=client["id"])
        assert killed >= 1  # the API's subscription connection is gone, as in a Redis restart

        updates = await book.wait_for(2)
        assert updates[1]["orderBook"]["type"] == "RESYNC"  # resynchronised by the server
        sequence = updates[1]["orderBook"]["sequence"]
        await listening(redis, keys.book_channel("BTC-USDT"))
        reply = await place(bus, user.id, "BTC-USDT", "SELL", "0.001", "99000")
        assert reply["ok"], reply
        updates = await book.wait_for(3)
        assert updates[2]["orderBook"] == {"type": "DELTA", "sequence": sequence + 1}
    finally:
        await book.stop()
        await bus.submit("cancel_all", {"user_id": user.id})


@pytest.mark.parametrize("who", ["trader", "anonymous"])
async def test_risk_alerts_refuse_anyone_but_an_admin(
    platform: Platform, services: Services, who: str
) -> None:
    token = await login(services, await create_user(services)) if who == "trader" else None
    alerts = Watch(
        platform,
        "subscription { riskAlerts { id } }",
        token,
        WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL,
    ).start()
    with pytest.raises(TransportQueryError) as refused:
        await alerts.wait_for(1)
    expected = "FORBIDDEN" if who == "trader" else "UNAUTHENTICATED"
    assert refused.value.errors is not None
    assert [e["extensions"]["code"] for e in refused.value.errors] == [expected]
    await alerts.stop_quietly()


async def test_logout_ends_a_running_subscription_at_its_next_message(
    platform: Platform, services: Services, bus: CommandBus, redis: Redis
) -> None:
    seller = await create_user(services, kyc_status="approved")
    buyer = await create_user(services, kyc_status="approved")
    token = await login(services, seller)
    fills = Watch(
        platform, "subscription { myFills { id } }", token, WebsocketsTransport.APOLLO_SUBPROTOCOL
    ).start()
    try:
        await listening(redis, Keys(services.settings.redis_prefix).user_channel(seller.id))
        assert (await Api(platform, token)("mutation { logout }")) == {"logout": True}
        await deposit(bus, seller.id, "BTC", "0.01")
        await deposit(bus, buyer.id, "USDT", "2000")
        assert (await place(bus, seller.id, "BTC-USDT", "SELL", "0.01", "150000"))["ok"]
        bought = await place(bus, buyer.id, "BTC-USDT", "BUY", "0.01", "150000")
        assert [f["seller_user_id"] for f in bought["fills"]] == [seller.id]
        with pytest.raises(TransportQueryError) as ended:
            await fills.wait_for(1)
        assert ended.value.errors is not None
        assert [e["extensions"]["code"] for e in ended.value.errors] == ["UNAUTHENTICATED"]
        assert fills.items == []
    finally:
        await fills.stop_quietly()
        for user in (seller, buyer):
            await bus.submit("cancel_all", {"user_id": user.id})
