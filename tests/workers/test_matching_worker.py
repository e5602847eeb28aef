"""The real matching worker process, driven through the command bus."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from decimal import Decimal

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from app.config import Settings
from app.kit.bus import CommandBus
from app.kit.db import plain_url
from app.kit.redis import Keys
from tests.support.exchange import balance, cached_levels, check_invariants, deposit, place
from tests.support.processes import Platform, process_env
from tests.workers.conftest import NewTrader

pytestmark = pytest.mark.e2e

D = Decimal


async def test_crossing_orders_write_trade_orders_balances_fees_and_ledger_exactly(
    trader: NewTrader, bus: CommandBus, db: asyncpg.Connection, redis: Redis, settings: Settings
) -> None:
    alice, bob = await trader(), await trader()
    fee_account = await db.fetchval("SELECT id FROM users WHERE role = 'system'")
    fees_before = {a: await balance(db, fee_account, a) for a in ("BTC", "USDT")}
    await deposit(bus, alice, "USDT", "10000")
    await deposit(bus, bob, "BTC", "1")

    sell = await place(bus, bob, "BTC-USDT", "SELL", "0.5", "20000")
    assert sell["ok"] and sell["fills"] == []
    buy = await place(bus, alice, "BTC-USDT", "BUY", "0.3", "20010")
    assert buy["ok"], buy
    (fill,) = buy["fills"]
    assert {k: fill[k] for k in ("price", "quantity", "buyer_fee", "seller_fee", "taker_side")} == {
        "price": "20000",
        "quantity": "0.3",
        "buyer_fee": "0.00045",  # taker 0.15 % of 0.3 BTC, in the base asset the buyer gets
        "seller_fee": "6",  # maker 0.10 % of 6000 USDT, in the quote asset the seller gets
        "taker_side": "BUY",
    }

    trade = await db.fetchrow("SELECT * FROM trades WHERE id = $1", fill["id"])
    assert (trade["buyer_order_id"], trade["seller_order_id"]) == (
        buy["order_id"],
        sell["order_id"],
    )
    assert (trade["price"], trade["quantity"]) == (D("20000"), D("0.3"))
    assert (trade["buyer_fee"], trade["seller_fee"]) == (D("0.00045"), D("6"))
    assert (trade["buyer_user_id"], trade["seller_user_id"]) == (alice, bob)

    orders = {
        row["id"]: row
        for row in await db.fetch(
            "SELECT * FROM orders WHERE id = ANY($1)", [buy["order_id"], sell["order_id"]]
        )
    }
    assert (orders[buy["order_id"]]["status"], orders[buy["order_id"]]["filled_quantity"]) == (
        "FILLED",
        D("0.3"),
    )
    assert (orders[sell["order_id"]]["status"], orders[sell["order_id"]]["filled_quantity"]) == (
        "PARTIAL",
        D("0.3"),
    )

    # Alice locked 0.3 x 20010 = 6003, paid 6000, got the 3 of price improvement back.
    assert await balance(db, alice, "USDT") == (D("4000"), D("0"))
    assert await balance(db, alice, "BTC") == (D("0.29955"), D("0"))
    assert await balance(db, bob, "BTC") == (D("0.5"), D("0.2"))
    assert await balance(db, bob, "USDT") == (D("5994"), D("0"))
    fees_after = {a: await balance(db, fee_account, a) for a in ("BTC", "USDT")}
    assert fees_after["BTC"][0] - fees_before["BTC"][0] == D("0.00045")
    assert fees_after["USDT"][0] - fees_before["USDT"][0] == D("6")

    ledger = await db.fetch(
        "SELECT asset, available_delta, locked_delta, reason, reference FROM ledger_entries "
        "WHERE user_id = $1 ORDER BY id",
        alice,
    )
    assert [(r["asset"], r["available_delta"], r["locked_delta"], r["reason"]) for r in ledger] == [
        ("USDT", D("10000"), D("0"), "DEPOSIT"),
        ("USDT", D("-6003"), D("6003"), "ORDER_LOCK"),
        # 6003 leaves locked: 6000 paid to the seller, 3 of price improvement back.
        ("USDT", D("3"), D("-6003"), "TRADE"),
        ("BTC", D("0.3"), D("0"), "TRADE"),
        ("BTC", D("-0.00045"), D("0"), "FEE"),
    ]
    assert ledger[2]["reference"] == f"trade:{fill['id']}"

    keys = Keys(settings.redis_prefix)
    asks = await cached_levels(redis, keys, "BTC-USDT", "asks")
    assert {"price": "20000", "quantity": "0.2", "orders": 1, "score": 2e12} in asks
    await check_invariants(db)


async def test_rejections_are_typed_and_write_only_what_the_rules_say(
    trader: NewTrader, bus: CommandBus, db: asyncpg.Connection
) -> None:
    alice, bob = await trader(), await trader()
    await deposit(bus, alice, "USDT", "1000")
    own = await place(bus, bob, "ETH-USDT", "BUY", "0.1", "100")
    assert own["ok"] is False and own["error"]["code"] == "INSUFFICIENT_BALANCE"

    async def counts() -> tuple[int, ...]:
        row = await db.fetchrow(
            "SELECT (SELECT count(*) FROM orders) AS o, (SELECT count(*) FROM trades) AS t, "
            "(SELECT count(*) FROM ledger_entries) AS l"
        )
        return tuple(row.values())

    before = await counts()
    unknown_symbol = await place(bus, alice, "DOGE-USDT", "BUY", "1", "1")
    assert unknown_symbol["error"]["code"] in {"UNKNOWN_SYMBOL", "NOT_FOUND"}
    off_grid = await place(bus, alice, "ETH-USDT", "BUY", "0.00001", "100")
    assert (off_grid["error"]["code"], off_grid["error"]["field"]) == ("INVALID_INPUT", "quantity")
    unknown_order = await bus.submit("cancel", {"user_id": alice, "order_id": 10**12})
    assert unknown_order["error"]["code"] == "NOT_FOUND"
    unknown_user = await bus.submit("deposit", {"user_id": 10**12, "asset": "USDT", "amount": "1"})
    assert unknown_user["error"]["code"] == "NOT_FOUND"
    float_amount = await bus.submit("deposit", {"user_id": alice, "asset": "USDT", "amount": 1.5})
    assert float_amount["error"]["code"] == "INVALID_INPUT"
    # Amounts the record (DECIMAL(20, 8)) cannot hold are refused before anything else,
    # instead of failing the worker's commit.
    huge = await place(bus, alice, "ETH-USDT", "BUY", "0.0001", "1000000000000")
    assert (huge["error"]["code"], huge["error"]["field"]) == ("INVALID_INPUT", "price")
    too_much = await bus.submit(
        "deposit", {"user_id": alice, "asset": "USDT", "amount": "1000000000000"}
    )
    assert (too_much["error"]["code"], too_much["error"]["field"]) == ("INVALID_INPUT", "amount")
    # A client order id the orders table's CHECK would refuse is refused before the commit.
    spaced = await place(bus, alice, "ETH-USDT", "BUY", "0.1", "100", client_order_id="has space")
    assert (spaced["error"]["code"], spaced["error"]["field"]) == (
        "INVALID_INPUT",
        "client_order_id",
    )
    assert await counts() == before

    # Another user's order is NOT_FOUND to them, and stays open.
    resting = await place(bus, alice, "ETH-USDT", "BUY", "1", "100")
    assert resting["ok"], resting
    theirs = await bus.submit("cancel", {"user_id": bob, "order_id": resting["order_id"]})
    assert theirs["error"]["code"] == "NOT_FOUND"
    status = await db.fetchval("SELECT status FROM orders WHERE id = $1", resting["order_id"])
    assert status == "PENDING"

    # A halted market refuses new orders; cancelling stays possible; resume reopens it.
    halted = await bus.submit("halt", {"symbol": "ETH-USDT", "reason": "test"})
    try:
        assert halted["ok"], halted
        assert await db.fetchval("SELECT status FROM markets WHERE symbol = 'ETH-USDT'") == (
            "HALTED"
        )
        refused = await place(bus, alice, "ETH-USDT", "BUY", "1", "100")
        assert refused["error"]["code"] == "MARKET_HALTED"
        cancelled = await bus.submit("cancel", {"user_id": alice, "order_id": resting["order_id"]})
        assert cancelled["ok"] and cancelled["cancelled"] == [resting["order_id"]]
    finally:
        resumed = await bus.submit("resume", {"symbol": "ETH-USDT"})
    assert resumed["ok"]
    assert await db.fetchval("SELECT status FROM markets WHERE symbol = 'ETH-USDT'") == "TRADING"
    row = await db.fetchrow("SELECT * FROM orders WHERE id = $1", resting["order_id"])
    assert (row["status"], row["cancel_reason"]) == ("CANCELLED", "USER")
    assert await balance(db, alice, "USDT") == (D("1000"), D("0"))


async def test_a_repeated_command_id_is_applied_once_and_answered_the_same(
    trader: NewTrader, bus: CommandBus, db: asyncpg.Connection
) -> None:
    alice = await trader()
    payload = {"user_id": alice, "asset": "USDT", "amount": "25.5"}
    first = await bus.submit("deposit", payload, command_id=f"dep-{alice}")
    again = await bus.submit("deposit", payload, command_id=f"dep-{alice}")
    assert first == again
    assert await balance(db, alice, "USDT") == (D("25.5"), D("0"))

    order = {
        "user_id": alice,
        "symbol": "ETH-USDT",
        "side": "BUY",
        "type": "LIMIT",
        "quantity": "1",
        "price": "10",
        "client_order_id": "mine-1",
    }
    placed = await bus.submit("place", order)
    repeated = await bus.submit("place", order)  # new command id, same client order id
    assert placed["ok"] and repeated["ok"], (placed, repeated)
    assert repeated["order_id"] == placed["order_id"] and repeated.get("duplicate") is True
    count = await db.fetchval(
        "SELECT count(*) FROM orders WHERE user_id = $1 AND client_order_id = 'mine-1'", alice
    )
    assert count == 1
    assert await balance(db, alice, "USDT") == (D("15.5"), D("10"))


async def test_a_copy_arriving_while_the_first_is_being_committed_is_not_applied_again(
    trader: NewTrader, bus: CommandBus, db: asyncpg.Connection, settings: Settings, redis: Redis
) -> None:
    """The matcher runs ahead of the committer: a command id whose first copy is matched
    but not yet committed must get that copy's reply, not be applied a second time.

    The retry comes through another API process (its own bus and reply channel)."""
    replica = CommandBus(redis, Keys(settings.redis_prefix))
    alice = await trader()
    other = await trader()
    await deposit(bus, other, "USDT", "1")
    blocker = await asyncpg.connect(plain_url(settings.database_url or ""))
    try:
        # Hold other's balance row: the batch depositing to other cannot commit yet.
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("SELECT 1 FROM balances WHERE user_id = $1 FOR UPDATE", other)
        stuck = asyncio.create_task(deposit(bus, other, "USDT", "1"))
        await asyncio.sleep(0.3)  # that batch is now waiting on the lock, in the committer
        copy = {"user_id": alice, "asset": "USDT", "amount": "7"}
        first = asyncio.create_task(bus.submit("deposit", copy, command_id=f"once-{alice}"))
        await asyncio.sleep(0.3)  # matched: in flight behind the stuck batch
        second = asyncio.create_task(replica.submit("deposit", copy, command_id=f"once-{alice}"))
        await asyncio.sleep(0.3)
        assert not (stuck.done() or first.done() or second.done())
        await transaction.rollback()
        await stuck
        replies = [await first, await second]
    finally:
        await blocker.close()
        await replica.close()
    assert replies[0]["ok"] and replies[0] == replies[1], replies
    assert replies[0]["balance"]["available"] == "7"
    # The worker is still running (a second application would have failed its commit on
    # the command id's primary key) and the balance moved once.
    after = await deposit(bus, alice, "USDT", "1")
    assert after["balance"]["available"] == "8"
    assert await balance(db, alice, "USDT") == (D("8"), D("0"))
    rows = await db.fetchval(
        "SELECT count(*) FROM ledger_entries WHERE reference = $1", f"command:once-{alice}"
    )
    assert rows == 1


async def test_worker_exposes_metrics_and_heartbeat(
    platform: Platform, bus: CommandBus, settings: Settings, redis: Redis
) -> None:
    await bus.submit("resume", {"symbol": "BTC-USDT"})
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{settings.worker_metrics_port}/metrics")
    text = response.text
    assert 'tradegraph_worker_commands_total{kind="resume",outcome="ok"}' in text
    assert "tradegraph_worker_batch_size_bucket" in text
    assert "tradegraph_worker_commit_seconds_bucket" in text
    replied = [
        line
        for line in text.splitlines()
        if line.startswith("tradegraph_worker_command_to_reply_seconds_count")
    ]
    assert replied and float(replied[0].split()[-1]) >= 1
    heartbeat = json.loads(await redis.get(Keys(settings.redis_prefix).worker_heartbeat()) or "{}")
    assert heartbeat["pid"] == platform.procs["worker"].pid


async def test_the_operator_cli_deposits_through_the_bus(
    trader: NewTrader, db: asyncpg.Connection, settings: Settings, platform: Platform
) -> None:
    user = await trader()
    env = process_env(settings)
    args = [sys.executable, "-m", "app.cli", "deposit", "--user", str(user), "--asset", "usdt"]
    done = await asyncio.to_thread(
        subprocess.run,
        [*args, "--amount", "12.5", "--command-id", f"cli-{user}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"user {user} USDT: available 12.5, locked 0"
    again = await asyncio.to_thread(
        subprocess.run,
        [*args, "--amount", "12.5", "--command-id", f"cli-{user}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0 and again.stdout == done.stdout  # same id: applied once
    refused = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "app.cli",
            "withdraw",
            "--user",
            str(user),
            "--asset",
            "USDT",
            "--amount",
            "100",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert "INSUFFICIENT_BALANCE" in refused.stderr
    assert await balance(db, user, "USDT") == (D("12.5"), D("0"))
