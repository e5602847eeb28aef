"""Rebuild the engine from PostgreSQL: open orders, balances, fee tiers, sequences.

A restart reads every open order (100,000 and more), so the big tables are read in one
query each with amounts already in integer units: PostgreSQL scales the DECIMAL(20, 8)
values by 1e8 and sends them as digits, which ``int()`` reads several times faster than
asyncpg builds a ``Decimal`` and ``to_units`` converts it. The cycle collector is paused
while the books are built (a young generation collection every 700 new objects, over a heap
that only grows).
"""

from __future__ import annotations

import gc
from decimal import Decimal

import asyncpg

from engine import (
    BalanceState,
    Engine,
    EngineSnapshot,
    FeeRates,
    MarketLimits,
    MarketSpec,
    MarketStatus,
    RestingOrderState,
    Side,
    to_units,
)

PPM = Decimal(1_000_000)
PERCENT_PPM = Decimal(10_000)
"""A percentage column (10.00) in parts per million (100_000)."""
SIDES = {side.value: side for side in Side}


def units(column: str) -> str:
    """SQL for a DECIMAL(20, 8) column as the digits of its integer units (exact)."""
    return f"({column} * 100000000)::numeric(28, 0)::text"


async def load_snapshot(
    conn: asyncpg.Connection, *, max_open_orders_per_user: int | None = None
) -> EngineSnapshot:
    market_rows = await conn.fetch("SELECT * FROM markets ORDER BY symbol")
    markets = [
        MarketSpec(
            symbol=row["symbol"],
            base=row["base_asset"],
            quote=row["quote_asset"],
            tick_size=to_units(row["tick_size"]),
            lot_size=to_units(row["lot_size"]),
            min_notional=to_units(row["min_notional"]),
            status=MarketStatus(row["status"]),
        )
        for row in market_rows
    ]
    market_limits = {row["symbol"]: market_limits_of(row) for row in market_rows}
    halted_until = {
        row["symbol"]: int(row["halted_until"].timestamp() * 1000)
        for row in market_rows
        if row["status"] == "HALTED" and row["halted_until"] is not None
    }
    last_prices = {
        row["symbol"]: int(row["price"])
        for row in await conn.fetch(
            f"SELECT m.symbol, (SELECT {units('t.price')} FROM trades t WHERE t.symbol = m.symbol "
            "ORDER BY t.executed_at DESC, t.id DESC LIMIT 1) AS price FROM markets m"
        )
        if row["price"] is not None
    }
    position_limits: dict[str, int] = {}
    user_position_limits: dict[tuple[int, str], int] = {}
    for user_id, asset, limit in await conn.fetch(
        f"SELECT user_id, asset, {units('max_position')} FROM position_limits "
        "WHERE max_position IS NOT NULL"  # a NULL is a limit removed
    ):
        if user_id is None:
            position_limits[asset] = int(limit)
        else:
            user_position_limits[user_id, asset] = int(limit)
    suspended = {
        row["id"]: row["suspension_reason"] or ""
        for row in await conn.fetch(
            "SELECT id, suspension_reason FROM users WHERE trading_suspended ORDER BY id"
        )
    }
    fee_tiers = {
        row["tier"]: FeeRates(
            maker_ppm=int(row["maker_rate"] * PPM), taker_ppm=int(row["taker_rate"] * PPM)
        )
        for row in await conn.fetch("SELECT * FROM fee_tiers ORDER BY tier")
    }
    fee_account_id = await conn.fetchval("SELECT id FROM users WHERE role = 'system'")
    balances = [
        BalanceState(user_id, asset, int(available), int(locked))
        for user_id, asset, available, locked in await conn.fetch(
            f"SELECT user_id, asset, {units('available')}, {units('locked')} FROM balances "
            "WHERE available <> 0 OR locked <> 0 ORDER BY user_id, asset",
        )
    ]
    sides = SIDES
    orders = [
        RestingOrderState(
            order_id,
            user_id,
            symbol,
            sides[side],
            int(price),
            int(quantity),
            int(filled),
            order_id if priority is None else priority,
            post_only,
            client_order_id,
        )
        for (
            order_id,
            user_id,
            symbol,
            side,
            price,
            quantity,
            filled,
            priority,
            post_only,
            client_order_id,
        ) in await conn.fetch(
            f"SELECT id, user_id, symbol, side, {units('price')}, {units('quantity')}, "
            f"{units('filled_quantity')}, priority, post_only, client_order_id FROM orders "
            "WHERE status IN ('PENDING', 'PARTIAL') ORDER BY priority, id"
        )
    ]
    client_order_ids = {
        (user_id, client_order_id): order_id
        for order_id, user_id, client_order_id in await conn.fetch(
            "SELECT id, user_id, client_order_id FROM orders WHERE client_order_id IS NOT NULL"
        )
    }
    user_fee_tiers = {
        row["id"]: row["fee_tier"]
        for row in await conn.fetch("SELECT id, fee_tier FROM users WHERE fee_tier <> 1")
    }
    highest = await conn.fetchrow(
        "SELECT COALESCE(max(id), 0) AS id, COALESCE(max(priority), 0) AS priority FROM orders"
    )
    last_trade = await conn.fetchval("SELECT COALESCE(max(id), 0) FROM trades")
    sequences = {
        row["symbol"]: row["book_sequence"]
        for row in await conn.fetch("SELECT symbol, book_sequence FROM markets")
    }
    return EngineSnapshot(
        markets=markets,
        fee_account_id=fee_account_id,
        balances=balances,
        orders=orders,
        fee_tiers=fee_tiers,
        user_fee_tiers=user_fee_tiers,
        client_order_ids=client_order_ids,
        next_order_id=max(highest["id"], highest["priority"]) + 1,
        next_trade_id=last_trade + 1,
        book_sequences=sequences,
        max_open_orders_per_user=max_open_orders_per_user,
        market_limits=market_limits,
        halted_until=halted_until,
        last_prices=last_prices,
        position_limits=position_limits,
        user_position_limits=user_position_limits,
        suspended_users=suspended,
    )


def market_limits_of(row: asyncpg.Record) -> MarketLimits:
    """A ``markets`` row's risk settings."""

    def amount(column: str) -> int | None:
        value = row[column]
        return None if value is None else to_units(value)

    def ppm(column: str) -> int | None:
        value = row[column]
        return None if value is None else int(value * PERCENT_PPM)

    return MarketLimits(
        max_order_quantity=amount("max_order_quantity"),
        max_order_notional=amount("max_order_notional"),
        price_band_ppm=ppm("price_band_pct"),
        breaker_move_ppm=ppm("breaker_move_pct"),
        breaker_window_ms=row["breaker_window_seconds"] * 1000,
        breaker_cooldown_ms=row["breaker_cooldown_seconds"] * 1000,
    )


async def restore_engine(
    conn: asyncpg.Connection, *, max_open_orders_per_user: int | None = None
) -> Engine:
    collecting = gc.isenabled()
    gc.disable()
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await load_snapshot(conn, max_open_orders_per_user=max_open_orders_per_user)
        return Engine.restore(snapshot)
    finally:
        if collecting:
            gc.enable()
