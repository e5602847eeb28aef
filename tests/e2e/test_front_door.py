"""The trading path's checks where the state lives, through the real processes: KYC in the
worker, market status in every API process's cache, and batches for market makers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from app.kit.bus import CommandBus
from app.kit.db import plain_url
from app.services import Services
from tests.support.exchange import deposit
from tests.support.factories import create_admin, create_user, login
from tests.support.live import Api
from tests.support.processes import Platform, free_port

pytestmark = pytest.mark.e2e

PLACE = """mutation($input: PlaceOrderInput!) { placeOrder(input: $input) {
  order { id status } fills { id } errors { code field message } } }"""
CANCEL = "mutation($id: ID!) { cancelOrder(id: $id) { order { id status } errors { code } } }"
PLACE_MANY = """mutation($inputs: [PlaceOrderInput!]!) { placeOrders(inputs: $inputs) {
  results { order { id status clientOrderId quantity price }
            fills { id side price quantity fee feeAsset liquidity } errors { code field } }
  errors { code field message } } }"""
CANCEL_MANY = """mutation($ids: [ID!]!) { cancelOrders(ids: $ids) {
  results { order { id status cancelReason } errors { code field } }
  errors { code field message } } }"""
MARKET = '{ market(symbol: "ETH-USDT") { symbol status } }'


def limit(side: str, quantity: str, price: str, **extra: Any) -> dict[str, Any]:
    return {
        "symbol": "ETH-USDT",
        "side": side,
        "type": "LIMIT",
        "quantity": quantity,
        "price": price,
        **extra,
    }


@pytest.fixture(scope="module")
def second_api(platform: Platform) -> Iterator[str]:
    """A second `tradegraph api` process beside the platform's: its URL."""
    port = free_port()
    platform.start_api_on("api-b", port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        platform.stop("api-b")


@pytest.fixture
async def db(services: Services) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(plain_url(services.settings.database_url or ""))
    yield conn
    await conn.close()


async def test_kyc_approval_and_rejection_count_from_the_next_order_in_another_process(
    platform: Platform, second_api: str, services: Services, bus: CommandBus, db: asyncpg.Connection
) -> None:
    user = await create_user(services)  # KYC pending
    await deposit(bus, user.id, "USDT", "1000")
    admin = Api(platform, await login(services, await create_admin(services)))
    token = await login(services, user)
    via_b = Api(platform, token, url=second_api)
    order = {"input": limit("BUY", "0.1", "100")}

    # Pending: the worker refuses (the API no longer reads the user).
    refused = (await via_b(PLACE, **order))["placeOrder"]
    assert refused["order"] is None
    assert [(e["code"], e["field"]) for e in refused["errors"]] == [("KYC_REQUIRED", None)]

    approve = "mutation($u: ID!) { approveKyc(userId: $u) { user { kycStatus } errors { code } } }"
    approved = await admin(approve, u=str(user.id))
    assert approved == {"approveKyc": {"user": {"kycStatus": "APPROVED"}, "errors": []}}
    placed = (await via_b(PLACE, **order))["placeOrder"]
    assert placed["errors"] == [] and placed["order"]["status"] == "PENDING"

    reject = "mutation($u: ID!) { rejectKyc(userId: $u) { user { kycStatus } errors { code } } }"
    rejected = await admin(reject, u=str(user.id))
    assert rejected == {"rejectKyc": {"user": {"kycStatus": "REJECTED"}, "errors": []}}
    assert await db.fetchval("SELECT kyc_status FROM users WHERE id = $1", user.id) == "rejected"
    refused = (await via_b(PLACE, **order))["placeOrder"]
    assert [e["code"] for e in refused["errors"]] == ["KYC_REQUIRED"]
    batch = (await via_b(PLACE_MANY, inputs=[order["input"], order["input"]]))["placeOrders"]
    assert [[e["code"] for e in r["errors"]] for r in batch["results"]] == [
        ["KYC_REQUIRED"],
        ["KYC_REQUIRED"],
    ]

    # The resting order stays on the book, and cancelling it is still allowed.
    resting = await db.fetchval(
        "SELECT status FROM orders WHERE id = $1", int(placed["order"]["id"])
    )
    assert resting == "PENDING"
    cancelled = (await via_b(CANCEL, id=placed["order"]["id"]))["cancelOrder"]
    assert cancelled == {
        "order": {"id": placed["order"]["id"], "status": "CANCELLED"},
        "errors": [],
    }
    assert (
        await db.fetchval("SELECT count(*) FROM orders WHERE user_id = $1", user.id) == 1
    )  # the refused ones were never placed


async def test_a_halt_and_a_resume_are_seen_at_once_by_every_api_process(
    platform: Platform, second_api: str, services: Services, bus: CommandBus
) -> None:
    user = await create_user(services, kyc_status="approved")
    await deposit(bus, user.id, "USDT", "1000")
    admin = Api(platform, await login(services, await create_admin(services)))
    via_b = Api(platform, await login(services, user), url=second_api)
    order = {"input": limit("BUY", "0.1", "100")}
    assert await via_b(MARKET) == {"market": {"symbol": "ETH-USDT", "status": "TRADING"}}

    halt = 'mutation { haltMarket(symbol: "ETH-USDT", reason: "checks") { market { status } } }'
    try:
        assert await admin(halt) == {"haltMarket": {"market": {"status": "HALTED"}}}
        assert await via_b(MARKET) == {"market": {"symbol": "ETH-USDT", "status": "HALTED"}}
        refused = (await via_b(PLACE, **order))["placeOrder"]
        assert [(e["code"], e["field"]) for e in refused["errors"]] == [("MARKET_HALTED", "symbol")]
    finally:
        resume = 'mutation { resumeMarket(symbol: "ETH-USDT") { market { status } } }'
        assert await admin(resume) == {"resumeMarket": {"market": {"status": "TRADING"}}}
    assert await via_b(MARKET) == {"market": {"symbol": "ETH-USDT", "status": "TRADING"}}
    placed = (await via_b(PLACE, **order))["placeOrder"]
    assert placed["errors"] == [] and placed["order"]["status"] == "PENDING"
    await bus.submit("cancel_all", {"user_id": user.id})


async def test_a_batch_answers_each_entry_and_refuses_the_bad_ones_alone(
    platform: Platform, services: Services, bus: CommandBus, db: asyncpg.Connection
) -> None:
    maker = await create_user(services, kyc_status="approved")
    trader = await create_user(services, kyc_status="approved")
    await deposit(bus, maker.id, "ETH", "1")
    await deposit(bus, trader.id, "USDT", "1000")
    api = Api(platform, await login(services, trader))
    ask = await Api(platform, await login(services, maker))(
        PLACE, input=limit("SELL", "0.5", "1500")
    )
    assert ask["placeOrder"]["errors"] == []
    inputs = [
        limit("BUY", "0.1", "100", clientOrderId="mm-1"),  # rests
        limit("BUY", "0.1", "100.001"),  # off the tick grid: refused before sending
        limit("BUY", "0.2", "1500", clientOrderId="mm-2"),  # takes the maker's ask
        limit("BUY", "10", "900"),  # more USDT than the trader has: refused by the worker
        {**limit("BUY", "0.1", "100"), "symbol": "NOPE-USDT"},  # no such market
        limit("BUY", "0.1", "101", clientOrderId="mm-1"),  # repeats mm-1: the same order
    ]
    try:
        payload = (await api(PLACE_MANY, inputs=inputs))["placeOrders"]
        assert payload["errors"] == []
        results = payload["results"]
        assert [[(e["code"], e["field"]) for e in r["errors"]] for r in results] == [
            [],
            [("INVALID_INPUT", "price")],
            [],
            [("INSUFFICIENT_BALANCE", None)],
            [("INVALID_INPUT", "symbol")],
            [],
        ]
        first, _, taker, _, _, again = results
        assert first["order"] == {
            "id": first["order"]["id"],
            "status": "PENDING",
            "clientOrderId": "mm-1",
            "quantity": "0.1",
            "price": "100",
        }
        assert again["order"] == first["order"]
        assert taker["order"]["status"] == "FILLED"
        fee = Decimal("0.2") * Decimal("0.0015")  # tier 1 taker fee, in the base asset
        assert taker["fills"] == [
            {
                "id": taker["fills"][0]["id"],
                "side": "BUY",
                "price": "1500",
                "quantity": "0.2",
                "fee": str(fee.normalize()),
                "feeAsset": "ETH",
                "liquidity": "TAKER",
            }
        ]

        rows = await db.fetch(
            "SELECT id, status, client_order_id FROM orders WHERE user_id = $1 ORDER BY id",
            trader.id,
        )
        assert [(str(r["id"]), r["status"], r["client_order_id"]) for r in rows] == [
            (first["order"]["id"], "PENDING", "mm-1"),
            (taker["order"]["id"], "FILLED", "mm-2"),
        ]
        # One command on the bus for the whole batch.
        kinds = await db.fetch(
            "SELECT kind FROM processed_commands WHERE user_id = $1 AND kind LIKE 'place%'",
            trader.id,
        )
        assert [r["kind"] for r in kinds] == ["place_batch"]
    finally:
        await bus.submit("cancel_all", {"user_id": trader.id})
        await bus.submit("cancel_all", {"user_id": maker.id})


async def test_retrying_a_whole_batch_places_nothing_twice(
    platform: Platform, services: Services, bus: CommandBus, db: asyncpg.Connection
) -> None:
    trader = await create_user(services, kyc_status="approved")
    await deposit(bus, trader.id, "USDT", "1000")
    api = Api(platform, await login(services, trader))
    inputs = [limit("BUY", "0.1", str(100 + n), clientOrderId=f"retry-{n}") for n in range(5)]
    try:
        first = (await api(PLACE_MANY, inputs=inputs))["placeOrders"]
        locked = await db.fetchval(
            "SELECT locked FROM balances WHERE user_id = $1 AND asset = 'USDT'", trader.id
        )
        again = (await api(PLACE_MANY, inputs=inputs))["placeOrders"]
        assert again == first
        assert [r["order"]["clientOrderId"] for r in first["results"]] == [
            f"retry-{n}" for n in range(5)
        ]
        assert await db.fetchval("SELECT count(*) FROM orders WHERE user_id = $1", trader.id) == 5
        assert locked == Decimal("0.1") * sum(100 + n for n in range(5))
        assert (
            await db.fetchval(
                "SELECT locked FROM balances WHERE user_id = $1 AND asset = 'USDT'", trader.id
            )
            == locked
        )
    finally:
        await bus.submit("cancel_all", {"user_id": trader.id})


async def test_more_than_100_entries_are_refused_as_a_whole(
    platform: Platform, services: Services, bus: CommandBus, db: asyncpg.Connection
) -> None:
    trader = await create_user(services, kyc_status="approved")
    await deposit(bus, trader.id, "USDT", "100000")
    api = Api(platform, await login(services, trader))
    inputs = [limit("BUY", "0.1", "100", clientOrderId=f"big-{n}") for n in range(101)]
    payload = (await api(PLACE_MANY, inputs=inputs))["placeOrders"]
    assert payload == {
        "results": [],
        "errors": [
            {
                "code": "INVALID_INPUT",
                "field": "inputs",
                "message": "a batch has at most 100 orders, not 101",
            }
        ],
    }
    assert await db.fetchval("SELECT count(*) FROM orders WHERE user_id = $1", trader.id) == 0
    ids = [str(n) for n in range(1, 102)]
    cancels = (await api(CANCEL_MANY, ids=ids))["cancelOrders"]
    assert cancels["results"] == []
    assert [(e["code"], e["field"]) for e in cancels["errors"]] == [("INVALID_INPUT", "ids")]

    placed = (await api(PLACE_MANY, inputs=inputs[:100]))["placeOrders"]
    try:
        assert [r["errors"] for r in placed["results"]] == [[]] * 100
        assert await db.fetchval("SELECT count(*) FROM orders WHERE user_id = $1", trader.id) == 100
    finally:
        await bus.submit("cancel_all", {"user_id": trader.id})


async def test_cancel_orders_answers_each_id(
    platform: Platform, services: Services, bus: CommandBus, db: asyncpg.Connection
) -> None:
    trader = await create_user(services, kyc_status="approved")
    other = await create_user(services, kyc_status="approved")
    for user in (trader, other):
        await deposit(bus, user.id, "USDT", "1000")
    api = Api(platform, await login(services, trader))
    mine = (await api(PLACE_MANY, inputs=[limit("BUY", "0.1", "100")] * 2))["placeOrders"]
    own, closed = (r["order"]["id"] for r in mine["results"])
    theirs = await Api(platform, await login(services, other))(
        PLACE, input=limit("BUY", "0.1", "100")
    )
    their_id = theirs["placeOrder"]["order"]["id"]
    assert (await api(CANCEL, id=closed))["cancelOrder"]["errors"] == []
    try:
        ids = [own, "999999999999", their_id, "abc", closed]
        payload = (await api(CANCEL_MANY, ids=ids))["cancelOrders"]
        assert payload == {
            "results": [
                {"order": {"id": own, "status": "CANCELLED", "cancelReason": "USER"}, "errors": []},
                {"order": None, "errors": [{"code": "NOT_FOUND", "field": "id"}]},
                {"order": None, "errors": [{"code": "NOT_FOUND", "field": "id"}]},
                {"order": None, "errors": [{"code": "NOT_FOUND", "field": "id"}]},
                {"order": None, "errors": [{"code": "ORDER_NOT_OPEN", "field": "id"}]},
            ],
            "errors": [],
        }
        status = "SELECT status FROM orders WHERE id = $1"
        assert await db.fetchval(status, int(their_id)) == "PENDING"
        assert await db.fetchval(status, int(own)) == "CANCELLED"
    finally:
        await bus.submit("cancel_all", {"user_id": other.id})
