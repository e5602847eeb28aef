"""A restart rebuilds the exact books and balances from PostgreSQL, however many orders rest.

Each case makes a database of its own with thousands of random resting orders (both
markets, both sides, partly filled ones, amended ones whose priority is not their id,
client order ids, closed orders) and balances that lock exactly what the orders reserve,
written with COPY; then runs ``restore_engine``, what the worker does when it starts, and
compares the engine with the rows, read back independently (``to_units`` on the
``Decimal``\\ s asyncpg returns).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import asyncpg
import pytest

from app.kit import migrate
from app.kit.db import plain_url
from engine import (
    SCALE,
    Engine,
    OrderDuplicate,
    OrderType,
    PlaceOrder,
    RestingOrderState,
    Side,
    from_units,
    to_units,
)
from workers.matching.recovery import restore_engine

ORDERS = 5_000
USERS = 40
# symbol -> (base, mid price, tick, lot) in units: the migrations' two markets.
MARKETS = {
    "BTC-USDT": ("BTC", 30_000 * SCALE, SCALE // 100, SCALE // 100_000),
    "ETH-USDT": ("ETH", 2_000 * SCALE, SCALE // 100, SCALE // 10_000),
}


@pytest.fixture
async def conn(scratch_database: str) -> AsyncIterator[asyncpg.Connection]:
    await asyncio.to_thread(migrate.upgrade, scratch_database)  # alembic runs its own loop
    connection = await asyncpg.connect(plain_url(scratch_database))
    yield connection
    await connection.close()


async def seed(conn: asyncpg.Connection, rng: random.Random) -> None:
    """Random open and closed orders, and balances consistent with them."""
    users = list(range(101, 101 + USERS))
    await conn.copy_records_to_table(
        "users",
        records=[(u, f"r{u}@example.com", "x", "approved") for u in users],
        columns=["id", "email", "password_hash", "kyc_status"],
    )
    rows = []
    locked: dict[tuple[int, str], int] = {}
    priorities = rng.sample(range(ORDERS + 1, 4 * ORDERS), ORDERS // 10)
    for order_id in range(1, ORDERS + 1):
        symbol = rng.choice(list(MARKETS))
        base, mid, tick, lot = MARKETS[symbol]
        side = rng.choice(("BUY", "SELL"))
        ticks = rng.randint(1, 300)
        price = mid - ticks * tick if side == "BUY" else mid + ticks * tick
        quantity = rng.randint(1, 50) * lot * 100
        status = rng.choices(("PENDING", "PARTIAL", "FILLED", "CANCELLED"), (6, 2, 1, 1))[0]
        filled = {
            "PENDING": 0,
            "PARTIAL": rng.randint(1, quantity // lot - 1) * lot,
            "FILLED": quantity,
            "CANCELLED": 0,
        }[status]
        priority = priorities.pop() if priorities and rng.random() < 0.1 else order_id
        user = rng.choice(users)
        client_order_id = f"c{order_id}" if rng.random() < 0.3 else None
        if status in ("PENDING", "PARTIAL"):
            remaining = quantity - filled
            asset, reserve = (
                ("USDT", price * remaining // SCALE) if side == "BUY" else (base, remaining)
            )
            locked[user, asset] = locked.get((user, asset), 0) + reserve
        rows.append(
            (
                order_id, user, symbol, side, "LIMIT", from_units(quantity), from_units(price),
                from_units(filled), status, "GTC", rng.random() < 0.1, priority, client_order_id,
            )
        )  # fmt: skip
    await conn.copy_records_to_table(
        "orders",
        records=rows,
        columns=[
            "id", "user_id", "symbol", "side", "type", "quantity", "price", "filled_quantity",
            "status", "time_in_force", "post_only", "priority", "client_order_id",
        ],
    )  # fmt: skip
    balances = [
        (user, asset, from_units(rng.randint(0, 10**6) * SCALE), from_units(held))
        for user in users
        for asset in ("BTC", "ETH", "USDT")
        for held in [locked.get((user, asset), 0)]
    ]
    await conn.copy_records_to_table(
        "balances", records=balances, columns=["user_id", "asset", "available", "locked"]
    )


def state_of(row: asyncpg.Record) -> RestingOrderState:
    return RestingOrderState(
        row["id"],
        row["user_id"],
        row["symbol"],
        Side(row["side"]),
        to_units(row["price"]),
        to_units(row["quantity"]),
        to_units(row["filled_quantity"]),
        row["priority"],
        row["post_only"],
        row["client_order_id"],
    )


@pytest.mark.parametrize("seed_value", [1, 2])
async def test_restore_rebuilds_the_exact_books_and_balances(
    conn: asyncpg.Connection, seed_value: int
) -> None:
    await seed(conn, random.Random(seed_value))
    engine = await restore_engine(conn)

    open_rows = await conn.fetch(
        "SELECT * FROM orders WHERE status IN ('PENDING', 'PARTIAL') ORDER BY id"
    )
    assert len(open_rows) > ORDERS // 2
    for row in open_rows:
        assert engine.open_order(row["id"]) == state_of(row)
    restored = engine.snapshot()
    assert sorted(o.order_id for o in restored.orders) == [row["id"] for row in open_rows]

    # Every queue in time priority, every level's total, both sides of both books.
    for symbol in MARKETS:
        for side, best_first in ((Side.BUY, "DESC"), (Side.SELL, "ASC")):
            queue = await conn.fetch(
                "SELECT id FROM orders WHERE status IN ('PENDING', 'PARTIAL') AND symbol = $1 "
                f"AND side = $2 ORDER BY price {best_first}, priority, id",
                symbol,
                side.value,
            )
            in_book = [o.order_id for o in restored.orders if (o.symbol, o.side) == (symbol, side)]
            assert in_book == [row["id"] for row in queue]
            levels = await conn.fetch(
                "SELECT price, sum(quantity - filled_quantity) AS quantity FROM orders "
                "WHERE status IN ('PENDING', 'PARTIAL') AND symbol = $1 AND side = $2 "
                f"GROUP BY price ORDER BY price {best_first}",
                symbol,
                side.value,
            )
            assert engine.depth(symbol, side) == [
                (to_units(level["price"]), to_units(level["quantity"])) for level in levels
            ]

    for row in await conn.fetch("SELECT user_id, asset, available, locked FROM balances"):
        assert engine.balance(row["user_id"], row["asset"]) == (
            to_units(row["available"]),
            to_units(row["locked"]),
        )

    highest = await conn.fetchval("SELECT max(greatest(id, priority)) FROM orders")
    assert engine.next_order_id == highest + 1
    # A closed order's client order id still makes a repeated place a duplicate.
    closed = await conn.fetchrow(
        "SELECT id, user_id, client_order_id FROM orders "
        "WHERE status = 'FILLED' AND client_order_id IS NOT NULL LIMIT 1"
    )
    repeat = PlaceOrder(
        closed["user_id"],
        "BTC-USDT",
        Side.BUY,
        OrderType.LIMIT,
        SCALE // 100,
        20_000 * SCALE,
        client_order_id=closed["client_order_id"],
    )
    assert engine.process(repeat) == [
        OrderDuplicate(closed["id"], closed["user_id"], closed["client_order_id"])
    ]
    # And the rebuilt engine is one a snapshot restores to the same state.
    assert Engine.restore(restored).snapshot() == restored
