"""Rebuild the engine from PostgreSQL: open orders, balances, fee tiers, sequences."""

from __future__ import annotations

from decimal import Decimal

import asyncpg

from engine import (
    BalanceState,
    Engine,
    EngineSnapshot,
    FeeRates,
    MarketSpec,
    MarketStatus,
    RestingOrderState,
    Side,
    to_units,
)

PPM = Decimal(1_000_000)


async def load_snapshot(
    conn: asyncpg.Connection, *, max_open_orders_per_user: int | None = None
) -> EngineSnapshot:
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
        for row in await conn.fetch("SELECT * FROM markets ORDER BY symbol")
    ]
    fee_tiers = {
        row["tier"]: FeeRates(
            maker_ppm=int(row["maker_rate"] * PPM), taker_ppm=int(row["taker_rate"] * PPM)
        )
        for row in await conn.fetch("SELECT * FROM fee_tiers ORDER BY tier")
    }
    fee_account_id = await conn.fetchval("SELECT id FROM users WHERE role = 'system'")
    balances = [
        BalanceState(
            row["user_id"], row["asset"], to_units(row["available"]), to_units(row["locked"])
        )
        for row in await conn.fetch(
            "SELECT user_id, asset, available, locked FROM balances "
            "WHERE available <> 0 OR locked <> 0 ORDER BY user_id, asset"
        )
    ]
    orders = [
        RestingOrderState(
            order_id=row["id"],
            user_id=row["user_id"],
            symbol=row["symbol"],
            side=Side(row["side"]),
            price=to_units(row["price"]),
            quantity=to_units(row["quantity"]),
            filled_quantity=to_units(row["filled_quantity"]),
            priority=row["priority"] if row["priority"] is not None else row["id"],
            post_only=row["post_only"],
            client_order_id=row["client_order_id"],
        )
        for row in await conn.fetch(
            "SELECT id, user_id, symbol, side, price, quantity, filled_quantity, priority, "
            "post_only, client_order_id FROM orders WHERE status IN ('PENDING', 'PARTIAL') "
            "ORDER BY priority, id"
        )
    ]
    client_order_ids = {
        (row["user_id"], row["client_order_id"]): row["id"]
        for row in await conn.fetch(
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
    )


async def restore_engine(
    conn: asyncpg.Connection, *, max_open_orders_per_user: int | None = None
) -> Engine:
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        snapshot = await load_snapshot(conn, max_open_orders_per_user=max_open_orders_per_user)
    return Engine.restore(snapshot)
