"""Synthetic trades straight into the ``trades`` table, for figures computed from it (the
24 h ticker). Their ids are negative, so they never collide with the worker's (a
BIGSERIAL from 1); they name no orders or users. Delete them at the end of the test
(:func:`synthetic_trades` does): other tests check every trade's users and orders.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

_ids = itertools.count(-1, -1)


@dataclass(frozen=True, slots=True)
class SyntheticTrade:
    executed_at: datetime
    price: str
    quantity: str
    taker_side: str = "BUY"


async def insert_trades(
    conn: asyncpg.Connection, symbol: str, trades: Sequence[SyntheticTrade]
) -> list[int]:
    """Insert ``trades`` of ``symbol``; their (negative) ids."""
    rows = [
        (
            next(_ids),
            symbol,
            Decimal(trade.quantity),
            Decimal(trade.price),
            trade.taker_side,
            trade.executed_at,
        )
        for trade in trades
    ]
    await conn.executemany(
        "INSERT INTO trades (id, symbol, quantity, price, buyer_fee, seller_fee, taker_side,"
        " executed_at) VALUES ($1, $2, $3, $4, 0, 0, $5, $6)",
        rows,
    )
    return [row[0] for row in rows]


async def delete_trades(conn: asyncpg.Connection, ids: Sequence[int]) -> None:
    await conn.execute("DELETE FROM trades WHERE id = ANY($1::bigint[]) AND id < 0", list(ids))


@asynccontextmanager
async def synthetic_trades(conn: asyncpg.Connection) -> AsyncIterator[SyntheticTrades]:
    """An inserter whose rows are all deleted on the way out, whatever happened."""
    handle = SyntheticTrades(conn)
    try:
        yield handle
    finally:
        await delete_trades(conn, handle.ids)


class SyntheticTrades:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.ids: list[int] = []

    async def add(self, symbol: str, *trades: SyntheticTrade) -> list[int]:
        ids = await insert_trades(self._conn, symbol, trades)
        self.ids.extend(ids)
        return ids
