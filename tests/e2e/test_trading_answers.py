"""The answer of every trading mutation is what the worker committed: each field of the
order and of its fills equals the row in PostgreSQL (the API answers from the worker's
reply, never reading the rows back)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from app.config import Settings
from app.kit.bus import CommandBus
from app.kit.db import plain_url
from app.services import Services
from tests.support.exchange import deposit
from tests.support.factories import create_user, login
from tests.support.live import Api
from tests.support.processes import Platform

pytestmark = pytest.mark.e2e

ORDER = """id symbol side type timeInForce postOnly quantity price filledQuantity
  remainingQuantity status clientOrderId cancelReason createdAt updatedAt"""
FILL = "id orderId symbol side price quantity quoteQuantity fee feeAsset liquidity executedAt"
PLACE = f"""mutation($input: PlaceOrderInput!) {{ placeOrder(input: $input) {{
  order {{ {ORDER} }} fills {{ {FILL} }} errors {{ code field message }} }} }}"""
AMEND = f"""mutation($input: AmendOrderInput!) {{ amendOrder(input: $input) {{
  order {{ {ORDER} }} errors {{ code field message }} }} }}"""
CANCEL = f"""mutation($id: ID) {{ cancelOrder(id: $id) {{
  order {{ {ORDER} }} errors {{ code field message }} }} }}"""
CANCEL_ALL = """mutation { cancelAllOrders(symbol: "BTC-USDT") {
  cancelledCount errors { code } } }"""


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(plain_url(settings.database_url or ""))
    yield conn
    await conn.close()


def _amount(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def order_as_stored(row: asyncpg.Record) -> dict[str, Any]:
    """The orders row as the API shows it."""
    return {
        "id": str(row["id"]),
        "symbol": row["symbol"],
        "side": row["side"],
        "type": row["type"],
        "timeInForce": row["time_in_force"],
        "postOnly": row["post_only"],
        "quantity": _amount(row["quantity"]),
        "price": _amount(row["price"]),
        "filledQuantity": _amount(row["filled_quantity"]),
        "remainingQuantity": _amount(row["quantity"] - row["filled_quantity"]),
        "status": row["status"],
        "clientOrderId": row["client_order_id"],
        "cancelReason": row["cancel_reason"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
    }


def fill_as_stored(row: asyncpg.Record, user_id: int) -> dict[str, Any]:
    """The trades row as ``user_id``'s fill."""
    buyer = row["buyer_user_id"] == user_id
    side = "BUY" if buyer else "SELL"
    base, quote = row["symbol"].split("-")
    return {
        "id": str(row["id"]),
        "orderId": str(row["buyer_order_id" if buyer else "seller_order_id"]),
        "symbol": row["symbol"],
        "side": side,
        "price": _amount(row["price"]),
        "quantity": _amount(row["quantity"]),
        "quoteQuantity": _amount(row["price"] * row["quantity"]),
        "fee": _amount(row["buyer_fee" if buyer else "seller_fee"]),
        "feeAsset": base if buyer else quote,
        "liquidity": "TAKER" if row["taker_side"] == side else "MAKER",
        "executedAt": row["executed_at"],
    }


def _timestamps(answer: dict[str, Any], *names: str) -> dict[str, Any]:
    """``answer`` with its ISO timestamps as datetimes (compared as instants)."""
    return {k: datetime.fromisoformat(v) if k in names else v for k, v in answer.items()}


async def stored_order(db: asyncpg.Connection, order_id: str) -> dict[str, Any]:
    row = await db.fetchrow("SELECT * FROM orders WHERE id = $1", int(order_id))
    assert row is not None
    return order_as_stored(row)


def shown(order: dict[str, Any]) -> dict[str, Any]:
    return _timestamps(order, "createdAt", "updatedAt")


async def test_each_trading_answer_equals_the_rows_committed(
    platform: Platform, services: Services, bus: CommandBus, db: asyncpg.Connection
) -> None:
    alice_user = await create_user(services, kyc_status="approved")
    bob_user = await create_user(services, kyc_status="approved")
    alice = Api(platform, await login(services, alice_user))
    bob = Api(platform, await login(services, bob_user))
    await deposit(bus, alice_user.id, "USDT", "100000")
    await deposit(bus, bob_user.id, "BTC", "10")

    def order(side: str, quantity: str, price: str, **extra: Any) -> dict[str, Any]:
        return {
            "input": {
                "symbol": "BTC-USDT",
                "side": side,
                "type": "LIMIT",
                "quantity": quantity,
                "price": price,
                **extra,
            }
        }

    # Two resting asks, then a bid that takes all of one and part of the other.
    first = (await bob(PLACE, **order("SELL", "0.5", "30000")))["placeOrder"]
    second = (await bob(PLACE, **order("SELL", "0.3", "30100", clientOrderId="ask-2")))[
        "placeOrder"
    ]
    assert first["errors"] == second["errors"] == [] and first["fills"] == []
    for placed in (first, second):
        assert shown(placed["order"]) == await stored_order(db, placed["order"]["id"])
    taken = (await alice(PLACE, **order("BUY", "0.6", "30100", timeInForce="IOC")))["placeOrder"]
    assert taken["errors"] == [] and taken["order"]["status"] == "FILLED"
    assert shown(taken["order"]) == await stored_order(db, taken["order"]["id"])
    assert len(taken["fills"]) == 2
    trades = {
        str(row["id"]): row
        for row in await db.fetch(
            "SELECT * FROM trades WHERE buyer_order_id = $1 ORDER BY id", int(taken["order"]["id"])
        )
    }
    assert [_timestamps(f, "executedAt") for f in taken["fills"]] == [
        fill_as_stored(trades[f["id"]], alice_user.id) for f in taken["fills"]
    ]
    # The makers' rows moved on too (the answers above were their state then).
    assert (await stored_order(db, first["order"]["id"]))["status"] == "FILLED"

    # Amend the partly filled ask (0.1 of 0.3 filled): the answer is the row after it.
    amended = (await bob(AMEND, input={"id": second["order"]["id"], "quantity": "0.25"}))[
        "amendOrder"
    ]
    assert amended["errors"] == []
    assert amended["order"]["filledQuantity"] == "0.1"
    assert shown(amended["order"]) == await stored_order(db, second["order"]["id"])
    assert amended["order"]["updatedAt"] != second["order"]["updatedAt"]

    # Cancel it.
    cancelled = (await bob(CANCEL, id=second["order"]["id"]))["cancelOrder"]
    assert cancelled["errors"] == []
    assert (cancelled["order"]["status"], cancelled["order"]["cancelReason"]) == (
        "CANCELLED",
        "USER",
    )
    assert shown(cancelled["order"]) == await stored_order(db, second["order"]["id"])

    # Cancel all: the count is the rows it cancelled.
    resting = [
        (await bob(PLACE, **order("SELL", "0.1", price)))["placeOrder"]["order"]["id"]
        for price in ("31000", "32000")
    ]
    everything = (await bob(CANCEL_ALL))["cancelAllOrders"]
    assert everything == {"cancelledCount": 2, "errors": []}
    rows = await db.fetch(
        "SELECT status, cancel_reason FROM orders WHERE id = ANY($1)", [int(i) for i in resting]
    )
    assert [(r["status"], r["cancel_reason"]) for r in rows] == [("CANCELLED", "USER")] * 2
