"""The worker enforces KYC (it holds and writes every user's status) and runs batches."""

from __future__ import annotations

import asyncpg
import pytest

from app.kit.bus import CommandBus
from tests.support.exchange import create_user, deposit, place
from tests.workers.conftest import NewTrader

pytestmark = pytest.mark.e2e

KYC_REQUIRED = {
    "code": "KYC_REQUIRED",
    "message": "trading needs approved KYC (identity check)",
    "field": None,
}


async def test_kyc_is_enforced_and_written_by_the_worker(
    bus: CommandBus, db: asyncpg.Connection
) -> None:
    user = await create_user(db, kyc="pending")
    await deposit(bus, user, "USDT", "1000")
    refused = await place(bus, user, "ETH-USDT", "BUY", "0.1", "100")
    assert (refused["ok"], refused["error"]) == (False, KYC_REQUIRED)

    approved = await bus.submit("set_kyc", {"user_id": user, "status": "approved"})
    assert approved["ok"], approved
    assert await db.fetchval("SELECT kyc_status FROM users WHERE id = $1", user) == "approved"
    resting = await place(bus, user, "ETH-USDT", "BUY", "0.1", "100")
    assert resting["ok"], resting

    rejected = await bus.submit("set_kyc", {"user_id": user, "status": "rejected"})
    assert rejected["ok"], rejected
    assert await db.fetchval("SELECT kyc_status FROM users WHERE id = $1", user) == "rejected"
    for refused in (
        await place(bus, user, "ETH-USDT", "BUY", "0.1", "100"),
        await bus.submit(
            "amend", {"user_id": user, "order_id": resting["order_id"], "quantity": "0.2"}
        ),
    ):
        assert (refused["ok"], refused["error"]) == (False, KYC_REQUIRED)
    batch = await bus.submit(
        "place_batch",
        {
            "user_id": user,
            "entries": [{"symbol": "ETH-USDT", "side": "BUY", "type": "LIMIT", "quantity": "0.1"}],
        },
    )
    assert batch["ok"] and [e["error"] for e in batch["entries"]] == [KYC_REQUIRED]
    # A rejected user's resting order stays until they cancel it, which they may.
    cancelled = await bus.submit("cancel", {"user_id": user, "order_id": resting["order_id"]})
    assert cancelled["ok"] and cancelled["cancelled"] == [resting["order_id"]]


async def test_set_kyc_refuses_an_unknown_status_and_an_unknown_user(bus: CommandBus) -> None:
    bad = await bus.submit("set_kyc", {"user_id": 1, "status": "maybe"})
    assert (bad["ok"], bad["error"]["code"], bad["error"]["field"]) == (
        False,
        "INVALID_INPUT",
        "status",
    )
    nobody = await bus.submit("set_kyc", {"user_id": 2**62, "status": "approved"})
    assert (nobody["ok"], nobody["error"]["code"]) == (False, "NOT_FOUND")


async def test_a_batch_runs_each_entry_in_order_in_one_command(
    trader: NewTrader, bus: CommandBus, db: asyncpg.Connection
) -> None:
    user = await trader()
    await deposit(bus, user, "USDT", "15")
    entry = {"symbol": "ETH-USDT", "side": "BUY", "type": "LIMIT", "quantity": "0.1"}
    reply = await bus.submit(
        "place_batch",
        {
            "user_id": user,
            "entries": [
                {**entry, "price": "100"},  # 10 USDT locked
                {**entry, "price": "100"},  # only 5 left: refused
                {**entry, "price": "50"},  # 5 USDT: fits
                {**entry, "price": "ten"},  # not a decimal: refused alone
            ],
        },
    )
    assert reply["ok"], reply
    entries = reply["entries"]
    assert [e["ok"] for e in entries] == [True, False, True, False]
    assert [(e["error"]["code"], e["error"]["field"]) for e in entries if not e["ok"]] == [
        ("INSUFFICIENT_BALANCE", None),
        ("INVALID_INPUT", "price"),
    ]
    placed = [e["order_id"] for e in entries if e["ok"]]
    rows = await db.fetch("SELECT id FROM orders WHERE user_id = $1 ORDER BY id", user)
    assert [r["id"] for r in rows] == placed

    cancels = await bus.submit(
        "cancel_batch",
        {"user_id": user, "entries": [{"order_id": placed[1]}, {"order_id": placed[1]}]},
    )
    assert [e["ok"] for e in cancels["entries"]] == [True, False]
    assert cancels["entries"][1]["error"]["code"] == "ORDER_NOT_OPEN"

    # A command whose shape is wrong is refused as a whole, naming the field; nothing runs.
    too_many = await bus.submit("place_batch", {"user_id": user, "entries": [entry] * 101})
    assert (too_many["ok"], too_many["error"]["field"]) == (False, "entries")
    not_an_entry = await bus.submit("place_batch", {"user_id": user, "entries": [entry, "x"]})
    assert (not_an_entry["ok"], not_an_entry["error"]["field"]) == (False, "entries[1]")
    rows = await db.fetch("SELECT id FROM orders WHERE user_id = $1 ORDER BY id", user)
    assert [r["id"] for r in rows] == placed
