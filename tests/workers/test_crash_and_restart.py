"""The worker killed mid-load loses nothing acknowledged; a restart rebuilds the same book."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from app.config import Settings
from app.kit.bus import CommandBus, CommandTimeout
from app.kit.redis import Keys
from tests.support.exchange import cached_levels, check_invariants, deposit, place
from tests.support.processes import Platform, submit_while_stopped
from tests.workers.conftest import NewTrader

pytestmark = pytest.mark.e2e


async def submit_until_answered(
    bus: CommandBus, kind: str, payload: dict[str, Any], command_id: str
) -> dict[str, Any]:
    """What a well-behaved client does: on a timeout, retry with the same command id."""
    for _ in range(20):
        try:
            return await bus.submit(kind, payload, command_id=command_id, timeout=2.0)
        except CommandTimeout:
            continue
    raise AssertionError(f"command {command_id} never answered")


async def test_kill_9_mid_load_loses_no_acknowledged_command_and_applies_none_twice(
    platform: Platform, bus: CommandBus, db: asyncpg.Connection, trader: NewTrader
) -> None:
    users = [await trader() for _ in range(4)]
    for user in users:
        await deposit(bus, user, "USDT", "1000000")
        await deposit(bus, user, "ETH", "10000")
    run = uuid.uuid4().hex[:8]
    sent: dict[str, tuple[str, dict[str, Any]]] = {}
    answered: dict[str, dict[str, Any]] = {}
    stop = asyncio.Event()

    async def client(index: int) -> None:
        rng = random.Random(index)
        user = users[index]
        open_orders: list[int] = []
        n = 0
        while not stop.is_set():
            n += 1
            command_id = f"crash-{run}-{index}-{n}"
            if open_orders and rng.random() < 0.35:
                kind = "cancel"
                payload: dict[str, Any] = {"user_id": user, "order_id": open_orders.pop(0)}
            else:
                kind = "place"
                payload = {
                    "user_id": user,
                    "symbol": "ETH-USDT",
                    "side": rng.choice(["BUY", "SELL"]),
                    "type": "LIMIT",
                    "quantity": f"{rng.randint(1, 20) / 10:.1f}",
                    "price": f"{rng.randint(3000, 3020)}",
                    "client_order_id": command_id,
                }
            sent[command_id] = (kind, payload)
            reply = await submit_until_answered(bus, kind, payload, command_id)
            answered[command_id] = reply
            if kind == "place" and reply["ok"] and reply["order_id"]:
                open_orders.append(reply["order_id"])

    clients = [asyncio.create_task(client(i)) for i in range(len(users))]
    await asyncio.sleep(1.5)
    platform.kill("worker")  # SIGKILL: no chance to finish its batch
    await asyncio.sleep(0.3)
    await asyncio.to_thread(platform.start_worker)
    await asyncio.sleep(1.5)
    stop.set()
    await asyncio.gather(*clients)

    assert len(answered) == len(sent) > 50
    stored = {
        row["command_id"]: json.loads(row["result"])
        for row in await db.fetch(
            "SELECT command_id, result FROM processed_commands WHERE command_id = ANY($1)",
            list(answered),
        )
    }
    # Every answer the clients got is committed, and is the answer that was committed.
    assert stored == answered
    # No command was applied twice: one order per client order id, one lock per order.
    placed = [cid for cid, (kind, _) in sent.items() if kind == "place" and answered[cid]["ok"]]
    rows = await db.fetch(
        "SELECT client_order_id, count(*) AS n FROM orders "
        "WHERE client_order_id = ANY($1) GROUP BY client_order_id",
        placed,
    )
    assert {row["client_order_id"]: row["n"] for row in rows} == dict.fromkeys(placed, 1)
    locks = await db.fetch(
        "SELECT reference, count(*) AS n FROM ledger_entries WHERE reason = 'ORDER_LOCK' "
        "AND user_id = ANY($1) GROUP BY reference HAVING count(*) > 1",
        users,
    )
    assert locks == []
    # Asking again after the restart gives the original answer and changes nothing.
    sample = random.Random(7).sample(sorted(answered), 20)
    for command_id in sample:
        kind, payload = sent[command_id]
        assert await bus.submit(kind, payload, command_id=command_id) == answered[command_id]
    await check_invariants(db)


async def test_restart_with_thousands_of_resting_orders_rebuilds_the_same_book(
    platform: Platform,
    bus: CommandBus,
    db: asyncpg.Connection,
    redis: Redis,
    settings: Settings,
    trader: NewTrader,
) -> None:
    users = [await trader() for _ in range(10)]
    for user in users:
        await deposit(bus, user, "USDT", "10000000")
        await deposit(bus, user, "BTC", "1000")
    rng = random.Random(3)

    async def rest(i: int) -> None:
        user = users[i % len(users)]
        if i % 2:
            reply = await place(bus, user, "BTC-USDT", "BUY", "0.1", f"{rng.randint(100, 999)}")
        else:
            reply = await place(
                bus, user, "BTC-USDT", "SELL", "0.01", f"{rng.randint(90000, 99999)}"
            )
        assert reply["ok"], reply

    for start in range(0, 3000, 250):
        await asyncio.gather(*(rest(i) for i in range(start, start + 250)))

    keys = Keys(settings.redis_prefix)

    async def book() -> tuple[object, ...]:
        return (
            await cached_levels(redis, keys, "BTC-USDT", "bids"),
            await cached_levels(redis, keys, "BTC-USDT", "asks"),
            await redis.get(keys.book_sequence("BTC-USDT")),
        )

    before = await book()  # kept up to date delta by delta
    assert sum(level["orders"] for side in before[:2] for level in side) >= 3000  # type: ignore[attr-defined]
    worker = platform.procs["worker"]
    platform.stop("worker")  # SIGTERM: finish the batch, commit, exit 0
    assert worker.returncode == 0
    seconds = await asyncio.to_thread(platform.start_worker)
    after = await book()  # rebuilt from PostgreSQL
    assert after == before
    assert seconds < 30

    # The sequence continues where it stopped.
    sequence = int(before[2])  # type: ignore[call-overload]
    reply = await place(bus, users[0], "BTC-USDT", "BUY", "0.01", "1000")
    assert reply["ok"]
    assert await redis.get(keys.book_sequence("BTC-USDT")) == str(sequence + 1)


async def test_entries_left_pending_by_another_consumer_are_all_claimed_and_applied_once(
    platform: Platform,
    bus: CommandBus,
    db: asyncpg.Connection,
    redis: Redis,
    settings: Settings,
    trader: NewTrader,
) -> None:
    """A worker of an older deployment (another consumer name) read entries and died.

    The new worker claims every one of them - more than one claim round's worth - and
    applies each once, before anything newer; the stream holds nothing processed after."""
    alice = await trader()
    stream = Keys(settings.redis_prefix).command_stream()
    count = 1_500
    replies = await submit_while_stopped(
        platform,
        redis,
        (
            bus.submit(
                "deposit",
                {"user_id": alice, "asset": "USDT", "amount": "0.01"},
                command_id=f"orphan-{alice}-{i}",
                timeout=30,
            )
            for i in range(count)
        ),
    )
    taken: Any = await redis.xreadgroup("matching", "old-deployment", {stream: ">"}, count=count)
    assert len(taken[0][1]) == count
    await asyncio.to_thread(platform.start_worker)
    answers = await asyncio.gather(*replies)

    assert all(answer["ok"] for answer in answers)
    assert await db.fetchval(
        "SELECT available FROM balances WHERE user_id = $1 AND asset = 'USDT'", alice
    ) == Decimal("15")
    assert (
        await db.fetchval("SELECT count(*) FROM ledger_entries WHERE user_id = $1", alice) == count
    )
    pending: Any = await redis.xpending(stream, "matching")
    assert pending["pending"] == 0
    assert await redis.xlen(stream) == 0


async def test_a_command_that_crashes_the_worker_is_isolated_and_answered_as_failed(
    platform: Platform,
    bus: CommandBus,
    db: asyncpg.Connection,
    redis: Redis,
    settings: Settings,
    trader: NewTrader,
) -> None:
    """A poison pill (here: an order the database refuses at commit, through a trigger the
    test installs) crashes the worker on every delivery. After the first crash the pending
    entries run one at a time: the commands read with it are applied, and the pill alone
    is answered as failed once it has been delivered more than three times."""
    alice = await trader()
    await deposit(bus, alice, "USDT", "1000")
    pill = f"poison-{uuid.uuid4().hex[:8]}"
    await db.execute(
        f"""
        CREATE FUNCTION refuse_{pill.replace("-", "_")}() RETURNS trigger AS $$
        BEGIN
            IF NEW.client_order_id = '{pill}' THEN RAISE EXCEPTION 'poison pill'; END IF;
            RETURN NEW;
        END $$ LANGUAGE plpgsql;
        CREATE TRIGGER refuse_{pill.replace("-", "_")} BEFORE INSERT ON orders
            FOR EACH ROW EXECUTE FUNCTION refuse_{pill.replace("-", "_")}();
        """
    )
    stream = Keys(settings.redis_prefix).command_stream()
    try:

        def order(client_order_id: str) -> dict[str, Any]:
            return {
                "user_id": alice,
                "symbol": "ETH-USDT",
                "side": "BUY",
                "type": "LIMIT",
                "quantity": "0.1",
                "price": "100",
                "client_order_id": client_order_id,
            }

        names = [f"{pill}-before", pill, f"{pill}-after"]
        replies = await submit_while_stopped(
            platform, redis, (bus.submit("place", order(name), timeout=60) for name in names)
        )
        crashes = 0
        while not all(reply.done() for reply in replies):
            assert crashes <= 4, "the worker kept crashing"
            await asyncio.to_thread(platform.start_worker)
            worker = platform.procs["worker"]
            for _ in range(200):
                if worker.poll() is not None or all(reply.done() for reply in replies):
                    break
                await asyncio.sleep(0.05)
            if worker.poll() is not None:
                crashes += 1
        before, poisoned, after = [reply.result() for reply in replies]
    finally:
        await db.execute(f"DROP TRIGGER IF EXISTS refuse_{pill.replace('-', '_')} ON orders")
        await db.execute(f"DROP FUNCTION IF EXISTS refuse_{pill.replace('-', '_')}()")
        if platform.procs.get("worker") is None or platform.procs["worker"].poll() is not None:
            await asyncio.to_thread(platform.start_worker)

    assert crashes == 3
    assert before["ok"] and after["ok"], (before, after)
    assert (poisoned["ok"], poisoned["error"], poisoned["order"], poisoned["fills"]) == (
        False,
        {
            "code": "INTERNAL",
            "message": "the worker could not process this command",
            "field": None,
        },
        None,
        [],
    )
    stored = await db.fetch(
        "SELECT client_order_id FROM orders WHERE user_id = $1 ORDER BY id", alice
    )
    assert [row["client_order_id"] for row in stored] == [names[0], names[2]]
    assert await redis.xlen(stream) == 0
