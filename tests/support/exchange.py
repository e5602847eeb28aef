"""Factories and checks for tests that drive the matching worker through the bus."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import asyncpg
from redis.asyncio import Redis

from app.kit.bus import CommandBus
from app.kit.redis import Keys

SCALE = Decimal("0.00000001")


async def create_user(conn: asyncpg.Connection, *, kyc: str = "approved") -> int:
    """A user row, as `register` would write it (the API owns the users table)."""
    tag = uuid.uuid4().hex[:12]
    user_id: int = await conn.fetchval(
        "INSERT INTO users (email, username, password_hash, kyc_status) "
        "VALUES ($1, $2, 'x', $3) RETURNING id",
        f"{tag}@example.com",
        f"u{tag}",
        kyc,
    )
    return user_id


async def deposit(bus: CommandBus, user_id: int, asset: str, amount: str) -> dict[str, Any]:
    reply = await bus.submit("deposit", {"user_id": user_id, "asset": asset, "amount": amount})
    assert reply["ok"], reply
    return reply


async def place(
    bus: CommandBus,
    user_id: int,
    symbol: str,
    side: str,
    quantity: str,
    price: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "user_id": user_id,
        "symbol": symbol,
        "side": side,
        "type": "LIMIT" if price is not None else "MARKET",
        "quantity": quantity,
        "price": price,
        **extra,
    }
    return await bus.submit("place", payload)


async def balance(conn: asyncpg.Connection, user_id: int, asset: str) -> tuple[Decimal, Decimal]:
    row = await conn.fetchrow(
        "SELECT available, locked FROM balances WHERE user_id = $1 AND asset = $2", user_id, asset
    )
    if row is None:
        return Decimal(0), Decimal(0)
    return row["available"], row["locked"]


async def check_invariants(conn: asyncpg.Connection) -> None:
    """The brief's conservation rules, checked on the database itself."""
    # For every asset: balances (fee account included) = deposits - withdrawals.
    rows = await conn.fetch(
        """
        WITH held AS (
            SELECT asset, sum(available + locked) AS total FROM balances GROUP BY asset
        ), funded AS (
            SELECT asset, sum(amount) AS total FROM ledger_entries
            WHERE reason IN ('DEPOSIT', 'WITHDRAWAL') GROUP BY asset
        )
        SELECT COALESCE(h.asset, f.asset) AS asset, h.total AS held, f.total AS funded
        FROM held h FULL JOIN funded f USING (asset)
        WHERE COALESCE(h.total, 0) <> COALESCE(f.total, 0)
        """
    )
    assert not rows, f"conservation broken: {[dict(r) for r in rows]}"
    # Every balance is the sum of its ledger entries.
    rows = await conn.fetch(
        """
        SELECT b.user_id, b.asset, b.available, b.locked,
               COALESCE(l.available, 0) AS ledger_available,
               COALESCE(l.locked, 0) AS ledger_locked
        FROM balances b LEFT JOIN (
            SELECT user_id, asset, sum(available_delta) AS available,
                   sum(locked_delta) AS locked
            FROM ledger_entries GROUP BY user_id, asset
        ) l USING (user_id, asset)
        WHERE b.available <> COALESCE(l.available, 0) OR b.locked <> COALESCE(l.locked, 0)
        """
    )
    assert not rows, f"balances differ from the ledger: {[dict(r) for r in rows]}"
    # locked = what open orders reserve (BUY: price x remaining quote; SELL: remaining base).
    rows = await conn.fetch(
        """
        WITH reserved AS (
            SELECT o.user_id,
                   CASE WHEN o.side = 'BUY' THEN m.quote_asset ELSE m.base_asset END AS asset,
                   sum(CASE WHEN o.side = 'BUY'
                            THEN o.price * (o.quantity - o.filled_quantity)
                            ELSE o.quantity - o.filled_quantity END) AS amount
            FROM orders o JOIN markets m USING (symbol)
            WHERE o.status IN ('PENDING', 'PARTIAL')
            GROUP BY 1, 2
        )
        SELECT b.user_id, b.asset, b.locked, COALESCE(r.amount, 0) AS reserved
        FROM balances b FULL JOIN reserved r USING (user_id, asset)
        WHERE COALESCE(b.locked, 0) <> COALESCE(r.amount, 0)
        """
    )
    assert not rows, f"locked differs from open orders' reservations: {[dict(r) for r in rows]}"
    # No crossed book.
    rows = await conn.fetch(
        """
        SELECT symbol FROM orders WHERE status IN ('PENDING', 'PARTIAL') GROUP BY symbol
        HAVING max(price) FILTER (WHERE side = 'BUY') >= min(price) FILTER (WHERE side = 'SELL')
        """
    )
    assert not rows, f"crossed book: {[r['symbol'] for r in rows]}"
    # The worker's own rows carry no foreign key to users (migration 0003): each user id
    # they hold must still be a user, and each trade's users must own its orders.
    rows = await conn.fetch(
        """
        SELECT 'ledger' AS source, user_id FROM ledger_entries
        UNION SELECT 'command', user_id FROM processed_commands WHERE user_id IS NOT NULL
        UNION SELECT 'buyer', buyer_user_id FROM trades
        UNION SELECT 'seller', seller_user_id FROM trades
        EXCEPT SELECT source, id FROM users, unnest(ARRAY['ledger', 'command', 'buyer',
            'seller']) AS source
        """
    )
    assert not rows, f"rows name unknown users: {[dict(r) for r in rows]}"
    rows = await conn.fetch(
        """
        SELECT t.id FROM trades t
        JOIN orders b ON b.id = t.buyer_order_id JOIN orders s ON s.id = t.seller_order_id
        WHERE b.user_id <> t.buyer_user_id OR s.user_id <> t.seller_user_id
        """
    )
    assert not rows, f"trades whose users do not own their orders: {[r['id'] for r in rows]}"
    rows = await conn.fetch(CANDLES_DIFFER_FROM_TRADES)
    assert not rows, f"candles_1m differs from the trades: {[dict(r) for r in rows]}"


async def rebuild_candles(conn: asyncpg.Connection) -> None:
    """Build candles_1m again from the trades, as migration 0011 does: for a test that
    rewrites trades' history itself (the worker keeps the candles of what it writes)."""
    async with conn.transaction():
        await conn.execute("DELETE FROM candles_1m")
        await conn.execute(
            """
            INSERT INTO candles_1m (symbol, bucket, open, high, low, close, volume,
                quote_volume, trades, first_trade_id, last_trade_id)
            SELECT symbol, date_bin('1 minute', executed_at, TIMESTAMPTZ '2000-01-01Z'),
                (array_agg(price ORDER BY id))[1], max(price), min(price),
                (array_agg(price ORDER BY id DESC))[1], sum(quantity),
                sum(trunc(price * quantity, 8)), count(*), min(id), max(id)
            FROM trades WHERE executed_at IS NOT NULL GROUP BY 1, 2
            """
        )


CANDLES_DIFFER_FROM_TRADES = """
WITH ranked AS (
    SELECT symbol, date_trunc('minute', executed_at AT TIME ZONE 'UTC') AS minute, id, price,
           quantity, row_number() OVER w AS first_rank,
           row_number() OVER (PARTITION BY symbol, date_trunc('minute',
               executed_at AT TIME ZONE 'UTC') ORDER BY id DESC) AS last_rank
    FROM trades
    WINDOW w AS (PARTITION BY symbol, date_trunc('minute', executed_at AT TIME ZONE 'UTC')
                 ORDER BY id)
), expected AS (
    SELECT symbol, minute AT TIME ZONE 'UTC' AS bucket,
           max(price) FILTER (WHERE first_rank = 1) AS open, max(price) AS high,
           min(price) AS low, max(price) FILTER (WHERE last_rank = 1) AS close,
           sum(quantity) AS volume, sum(trunc(price * quantity, 8)) AS quote_volume,
           count(*)::int AS trades, min(id) AS first_trade_id, max(id) AS last_trade_id
    FROM ranked GROUP BY symbol, minute
)
SELECT symbol, bucket, e.open, c.open AS candle_open, e.close, c.close AS candle_close,
       e.trades, c.trades AS candle_trades
FROM expected e FULL JOIN candles_1m c USING (symbol, bucket)
WHERE (e.open, e.high, e.low, e.close, e.volume, e.quote_volume, e.trades, e.first_trade_id,
       e.last_trade_id)
      IS DISTINCT FROM (c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trades,
       c.first_trade_id, c.last_trade_id)
"""
"""Every minute's candle recomputed from the trades another way (window functions, UTC
minutes by date_trunc) than the worker builds it (date_bin, array_agg): the rows that differ."""


async def cached_levels(redis: Redis, keys: Keys, symbol: str, side: str) -> list[dict[str, Any]]:
    """The worker's Redis book cache for one side, best price last for bids."""
    members: Any = await redis.zrange(keys.order_book(symbol, side), 0, -1, withscores=True)
    return [{**json.loads(member), "score": score} for member, score in members]


async def clear_books(bus: CommandBus, symbols: tuple[str, ...] = ("BTC-USDT", "ETH-USDT")) -> None:
    """Cancel every resting order of the shared markets (a halt that cancels, then a resume):
    a test that leaves quotes behind must not trade with the next test's orders."""
    for symbol in symbols:
        halted = await bus.submit(
            "halt", {"symbol": symbol, "reason": "test reset", "cancel_orders": True}
        )
        assert halted["ok"] or halted["error"]["code"] == "INVALID_INPUT", halted
        resumed = await bus.submit("resume", {"symbol": symbol})
        assert resumed["ok"], resumed
