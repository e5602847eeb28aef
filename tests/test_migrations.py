"""The seed's constraints really hold in PostgreSQL, and the migrations go down and up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import pytest

from app.kit import migrate
from app.kit.db import plain_url

SEED_TABLES = {"users", "orders", "trades", "balances", "risk_events"}
ADDED_TABLES = {"markets", "fee_tiers", "ledger_entries"}


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection whose every change is rolled back at the end of the test."""
    connection = await asyncpg.connect(plain_url(database_url))
    # The worker writes orders and trades with the engine's ids, not the serial's: move the
    # serials past them so rows inserted here by hand do not collide.
    for table in ("orders", "trades"):
        await connection.execute(
            f"SELECT setval('{table}_id_seq', GREATEST((SELECT max(id) FROM {table}), 1))"
        )
    transaction = connection.transaction()
    await transaction.start()
    try:
        yield connection
    finally:
        await transaction.rollback()
        await connection.close()


async def make_user(conn: asyncpg.Connection, email: str = "t@migrations.test") -> int:
    user_id: int = await conn.fetchval(
        "INSERT INTO users (email, password_hash) VALUES ($1, 'x') RETURNING id", email
    )
    return user_id


async def refused(conn: asyncpg.Connection, sql: str, *args: object) -> asyncpg.PostgresError:
    """Run ``sql`` in a savepoint and return the error PostgreSQL raised."""
    with pytest.raises(asyncpg.PostgresError) as caught:
        async with conn.transaction():
            await conn.execute(sql, *args)
    return caught.value


async def test_negative_available_balance_is_refused(conn: asyncpg.Connection) -> None:
    user = await make_user(conn)
    error = await refused(
        conn, "INSERT INTO balances (user_id, asset, available) VALUES ($1, 'BTC', -1)", user
    )
    assert isinstance(error, asyncpg.CheckViolationError)
    assert "balances_available_check" in str(error)


async def test_negative_locked_balance_is_refused(conn: asyncpg.Connection) -> None:
    user = await make_user(conn)
    error = await refused(
        conn, "INSERT INTO balances (user_id, asset, locked) VALUES ($1, 'BTC', -0.00000001)", user
    )
    assert isinstance(error, asyncpg.CheckViolationError)


async def test_lower_case_symbol_is_refused(conn: asyncpg.Connection) -> None:
    user = await make_user(conn)
    error = await refused(
        conn,
        "INSERT INTO orders (user_id, symbol, side, type, quantity, price) "
        "VALUES ($1, 'btc-usdt', 'BUY', 'LIMIT', 1, 100)",
        user,
    )
    assert isinstance(error, asyncpg.CheckViolationError)
    assert "orders_symbol_check" in str(error)


async def test_side_hold_is_refused(conn: asyncpg.Connection) -> None:
    user = await make_user(conn)
    error = await refused(
        conn,
        "INSERT INTO orders (user_id, symbol, side, type, quantity, price) "
        "VALUES ($1, 'BTC-USDT', 'HOLD', 'LIMIT', 1, 100)",
        user,
    )
    assert isinstance(error, asyncpg.CheckViolationError)
    assert "orders_side_check" in str(error)


@pytest.mark.parametrize(
    ("column_values", "constraint"),
    [
        ("'BUY', 'STOP', 1, 100", "orders_type_check"),
        ("'BUY', 'LIMIT', 0, 100", "orders_quantity_check"),
        ("'BUY', 'LIMIT', 1, 0", "orders_price_check"),
        ("'BUY', 'LIMIT', 1, NULL", "ck_orders_limit_has_price"),
    ],
)
async def test_order_checks(conn: asyncpg.Connection, column_values: str, constraint: str) -> None:
    user = await make_user(conn)
    error = await refused(
        conn,
        "INSERT INTO orders (user_id, symbol, side, type, quantity, price) "
        f"VALUES ($1, 'BTC-USDT', {column_values})",
        user,
    )
    assert isinstance(error, asyncpg.CheckViolationError)
    assert constraint in str(error)


async def test_filled_quantity_cannot_exceed_quantity_or_status_be_unknown(
    conn: asyncpg.Connection,
) -> None:
    user = await make_user(conn)
    order = await conn.fetchval(
        "INSERT INTO orders (user_id, symbol, side, type, quantity, price) "
        "VALUES ($1, 'BTC-USDT', 'BUY', 'LIMIT', 1, 100) RETURNING id",
        user,
    )
    error = await refused(conn, "UPDATE orders SET filled_quantity = 2 WHERE id = $1", order)
    assert "ck_orders_filled_le_quantity" in str(error)
    error = await refused(conn, "UPDATE orders SET status = 'OPEN' WHERE id = $1", order)
    assert "orders_status_check" in str(error)


async def test_order_defaults_are_the_seeds(conn: asyncpg.Connection) -> None:
    user = await make_user(conn)
    row = await conn.fetchrow(
        "INSERT INTO orders (user_id, symbol, side, type, quantity, price) "
        "VALUES ($1, 'BTC-USDT', 'SELL', 'LIMIT', 0.5, 100.25) RETURNING *",
        user,
    )
    assert row["status"] == "PENDING"
    assert row["filled_quantity"] == Decimal("0E-8")
    assert row["time_in_force"] == "GTC"
    assert row["post_only"] is False
    assert row["quantity"] == Decimal("0.5")


async def test_client_order_id_is_unique_per_user(conn: asyncpg.Connection) -> None:
    alice, bob = await make_user(conn, "a@mig.test"), await make_user(conn, "b@mig.test")
    insert = (
        "INSERT INTO orders (user_id, symbol, side, type, quantity, price, client_order_id) "
        "VALUES ($1, 'BTC-USDT', 'BUY', 'LIMIT', 1, 100, 'my-order-1')"
    )
    await conn.execute(insert, alice)
    await conn.execute(insert, bob)  # another user may use the same id
    error = await refused(conn, insert, alice)
    assert isinstance(error, asyncpg.UniqueViolationError)


async def test_balance_is_unique_per_user_and_asset_and_asset_upper_case(
    conn: asyncpg.Connection,
) -> None:
    user = await make_user(conn)
    await conn.execute("INSERT INTO balances (user_id, asset) VALUES ($1, 'USDT')", user)
    error = await refused(conn, "INSERT INTO balances (user_id, asset) VALUES ($1, 'USDT')", user)
    assert isinstance(error, asyncpg.UniqueViolationError)
    error = await refused(conn, "INSERT INTO balances (user_id, asset) VALUES ($1, 'usdt')", user)
    assert "balances_asset_check" in str(error)


async def test_user_checks(conn: asyncpg.Connection) -> None:
    error = await refused(
        conn, "INSERT INTO users (email, password_hash, kyc_status) VALUES ('x@y.z', 'x', 'maybe')"
    )
    assert "users_kyc_status_check" in str(error)
    error = await refused(
        conn, "INSERT INTO users (email, password_hash, fee_tier) VALUES ('x@y.z', 'x', 6)"
    )
    assert "users_fee_tier_check" in str(error)
    error = await refused(
        conn, "INSERT INTO users (email, password_hash, role) VALUES ('x@y.z', 'x', 'root')"
    )
    assert "users_role_check" in str(error)


async def test_trade_and_risk_event_checks(conn: asyncpg.Connection) -> None:
    error = await refused(
        conn,
        "INSERT INTO trades (symbol, quantity, price, buyer_fee, seller_fee) "
        "VALUES ('BTC-USDT', 1, 100, -0.1, 0)",
    )
    assert "trades_buyer_fee_check" in str(error)
    error = await refused(
        conn, "INSERT INTO risk_events (event_type, severity) VALUES ('HACK', 'LOW')"
    )
    assert "risk_events_event_type_check" in str(error)
    error = await refused(
        conn, "INSERT INTO risk_events (event_type, severity) VALUES ('LOGIN', 'MILD')"
    )
    assert "risk_events_severity_check" in str(error)


async def test_updated_at_trigger_moves_on_update(conn: asyncpg.Connection) -> None:
    user = await make_user(conn)
    balance = await conn.fetchrow(
        "INSERT INTO balances (user_id, asset, created_at, updated_at) "
        "VALUES ($1, 'BTC', now() - interval '1 day', now() - interval '1 day') RETURNING *",
        user,
    )
    updated = await conn.fetchrow(
        "UPDATE balances SET available = 1 WHERE id = $1 RETURNING *", balance["id"]
    )
    assert updated["updated_at"] > balance["updated_at"]
    assert updated["created_at"] == balance["created_at"]


async def test_ledger_is_append_only(conn: asyncpg.Connection) -> None:
    user = await make_user(conn)
    entry = await conn.fetchrow(
        "INSERT INTO ledger_entries (user_id, asset, available_delta, locked_delta, reason, "
        "reference) VALUES ($1, 'USDT', 100, 0, 'DEPOSIT', 'command:1') RETURNING *",
        user,
    )
    assert entry["amount"] == Decimal("100")
    error = await refused(
        conn, "UPDATE ledger_entries SET reference = 'x' WHERE id = $1", entry["id"]
    )
    assert "append-only" in str(error)
    error = await refused(conn, "DELETE FROM ledger_entries WHERE id = $1", entry["id"])
    assert "append-only" in str(error)
    error = await refused(
        conn,
        "INSERT INTO ledger_entries (user_id, asset, available_delta, locked_delta, reason, "
        "reference) VALUES ($1, 'USDT', 1, 0, 'GIFT', 'x')",
        user,
    )
    assert "ledger_entries_reason_check" in str(error)


async def test_seed_data_exists(conn: asyncpg.Connection) -> None:
    markets = await conn.fetch("SELECT * FROM markets ORDER BY symbol")
    assert [(m["symbol"], m["base_asset"], m["quote_asset"], m["status"]) for m in markets] == [
        ("BTC-USDT", "BTC", "USDT", "TRADING"),
        ("ETH-USDT", "ETH", "USDT", "TRADING"),
    ]
    tiers = await conn.fetch("SELECT * FROM fee_tiers ORDER BY tier")
    assert [(t["maker_rate"], t["taker_rate"], t["min_volume_30d"]) for t in tiers] == [
        (Decimal("0.001"), Decimal("0.0015"), Decimal("0")),
        (Decimal("0.0009"), Decimal("0.00135"), Decimal("100000")),
        (Decimal("0.0008"), Decimal("0.0012"), Decimal("1000000")),
        (Decimal("0.0006"), Decimal("0.001"), Decimal("10000000")),
        (Decimal("0.0004"), Decimal("0.0008"), Decimal("50000000")),
    ]
    fee_account = await conn.fetchrow("SELECT * FROM users WHERE role = 'system'")
    assert fee_account["username"] == "exchange-fees"
    assert fee_account["kyc_status"] == "approved"


async def test_seed_indexes_exist_including_partial_ones(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname='public'")
    indexes = {row["indexname"]: row["indexdef"] for row in rows}
    for name in (
        "idx_users_email",
        "idx_users_kyc_status",
        "idx_orders_symbol_status",
        "idx_orders_user_created",
        "idx_trades_symbol_time",
        "idx_trades_buyer_order",
        "idx_trades_seller_order",
        "idx_balances_user",
        "idx_balances_asset",
        "idx_risk_events_user_time",
        "idx_risk_events_type",
        "idx_risk_events_severity",
    ):
        assert name in indexes
    assert "WHERE ((status)::text = ANY" in indexes["idx_orders_symbol_side_price"]
    assert "WHERE (resolved = false)" in indexes["idx_risk_events_unresolved"]


async def _tables(url: str) -> set[str]:
    connection = await asyncpg.connect(plain_url(url))
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
    finally:
        await connection.close()
    return {row["tablename"] for row in rows}


def test_downgrade_to_base_then_upgrade_to_head(scratch_database: str) -> None:
    migrate.upgrade(scratch_database)
    assert asyncio.run(_tables(scratch_database)) >= SEED_TABLES | ADDED_TABLES
    migrate.downgrade(scratch_database, "base")
    assert asyncio.run(_tables(scratch_database)) == {"alembic_version"}
    migrate.upgrade(scratch_database)
    assert asyncio.run(_tables(scratch_database)) >= SEED_TABLES | ADDED_TABLES
