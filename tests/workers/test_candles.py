"""The matching worker keeps candles_1m in the commit of its trades; migration 0011
backfills it from the trades already stored."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from app.kit import migrate
from app.kit.bus import CommandBus
from app.kit.db import plain_url
from tests.support.exchange import (
    CANDLES_DIFFER_FROM_TRADES,
    check_invariants,
    clear_books,
    deposit,
    place,
)
from tests.workers.conftest import NewTrader

pytestmark = pytest.mark.e2e

D = Decimal


async def minute_of(db: asyncpg.Connection, trade_id: int) -> asyncpg.Record:
    row: asyncpg.Record = await db.fetchrow(
        """SELECT c.* FROM trades t JOIN candles_1m c ON c.symbol = t.symbol
           AND c.bucket = date_bin('1 minute', t.executed_at, TIMESTAMPTZ '2000-01-01Z')
           WHERE t.id = $1""",
        trade_id,
    )
    return row


async def test_each_batch_s_trades_are_folded_into_their_minute(
    trader: NewTrader, bus: CommandBus, db: asyncpg.Connection
) -> None:
    await clear_books(bus, ("ETH-USDT",))  # the sweep below must meet only its own orders
    maker, taker = await trader(), await trader()
    await deposit(bus, maker, "ETH", "10")
    await deposit(bus, taker, "USDT", "100000")
    for price in ("2001", "2003", "2002"):
        assert (await place(bus, maker, "ETH-USDT", "SELL", "0.5", price))["ok"]
    # One command, three trades at three prices: one batch, one minute.
    swept = await place(bus, taker, "ETH-USDT", "BUY", "1.2", "2003")
    assert swept["ok"], swept
    fills = swept["fills"]
    assert [(f["price"], f["quantity"]) for f in fills] == [
        ("2001", "0.5"),
        ("2002", "0.5"),
        ("2003", "0.2"),
    ]
    candle = await minute_of(db, fills[0]["id"])
    trades = await db.fetch(
        """SELECT * FROM trades WHERE symbol = 'ETH-USDT'
           AND date_bin('1 minute', executed_at, TIMESTAMPTZ '2000-01-01Z') = $1 ORDER BY id""",
        candle["bucket"],
    )
    mine = [t for t in trades if t["id"] in {f["id"] for f in fills}]
    assert len(mine) == 3
    # The whole minute (other tests may have traded ETH-USDT in it too), exactly.
    assert (
        candle["open"],
        candle["high"],
        candle["low"],
        candle["close"],
        candle["volume"],
        candle["quote_volume"],
        candle["trades"],
        candle["first_trade_id"],
        candle["last_trade_id"],
    ) == (
        trades[0]["price"],
        max(t["price"] for t in trades),
        min(t["price"] for t in trades),
        trades[-1]["price"],
        sum(t["quantity"] for t in trades),
        sum(t["price"] * t["quantity"] for t in trades),
        len(trades),
        trades[0]["id"],
        trades[-1]["id"],
    )
    # A later batch in the same minute adds to the row (an upsert, not a second row).
    before = candle
    again = await place(bus, taker, "ETH-USDT", "BUY", "0.3", "2003")
    (fill,) = again["fills"]
    after = await minute_of(db, fill["id"])
    if after["bucket"] == before["bucket"]:
        assert after["trades"] == before["trades"] + 1
        assert after["volume"] == before["volume"] + D("0.3")
        assert after["close"] == D("2003")
        assert after["last_trade_id"] == fill["id"]
    assert await db.fetch(CANDLES_DIFFER_FROM_TRADES) == []
    await check_invariants(db)


async def test_migration_0011_backfills_the_candles_from_the_stored_trades(
    scratch_database: str,
) -> None:
    await asyncio.to_thread(migrate.upgrade, scratch_database, "0010")
    conn = await asyncpg.connect(plain_url(scratch_database))
    try:
        minute = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
        rows = [
            (1, "BTC-USDT", "30000", "0.1", minute),
            (2, "BTC-USDT", "30500", "0.2", minute + timedelta(seconds=10)),
            (3, "BTC-USDT", "29900", "0.05", minute + timedelta(seconds=59.999999)),
            (4, "BTC-USDT", "30100", "1", minute + timedelta(minutes=1)),
            (5, "ETH-USDT", "0.33333333", "0.33333333", minute),
        ]
        await conn.executemany(
            "INSERT INTO trades (id, symbol, price, quantity, buyer_fee, seller_fee, "
            "executed_at) VALUES ($1, $2, $3::numeric, $4::numeric, 0, 0, $5)",
            rows,
        )
        await asyncio.to_thread(migrate.upgrade, scratch_database, "0011")
        candles = await conn.fetch(
            "SELECT symbol, bucket, open, high, low, close, volume, quote_volume, trades, "
            "first_trade_id, last_trade_id FROM candles_1m ORDER BY symbol, bucket"
        )
        assert [tuple(c) for c in candles] == [
            (
                "BTC-USDT",
                minute,
                D("30000"),
                D("30500"),
                D("29900"),
                D("29900"),
                D("0.35"),
                D("10595"),  # 3000 + 6100 + 1495
                3,
                1,
                3,
            ),
            (
                "BTC-USDT",
                minute + timedelta(minutes=1),
                *[D("30100")] * 4,
                D("1"),
                D("30100"),
                1,
                4,
                4,
            ),
            (
                "ETH-USDT",
                minute,
                *[D("0.33333333")] * 4,
                D("0.33333333"),
                D("0.11111110"),  # cut to 8 decimals, as the engine's quote_quantity
                1,
                5,
                5,
            ),
        ]
        assert await conn.fetch(CANDLES_DIFFER_FROM_TRADES) == []
        await asyncio.to_thread(migrate.downgrade, scratch_database, "0010")
        assert await conn.fetchval("SELECT to_regclass('candles_1m')") is None
    finally:
        await conn.close()
