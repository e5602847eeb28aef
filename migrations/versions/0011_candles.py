"""Candles: ``candles_1m``, one OHLCV row per market per minute that had trades.

The matching worker upserts it in the same statement (the same commit) as the trades it
is built from (``workers/matching/store.py``); longer intervals are aggregated from these
rows when they are asked for (``app/markets/candles.py``, docs/adr/0013-candles.md).

- ``bucket``: the minute's start (UTC), ``date_bin('1 minute', executed_at, 2000-01-01Z)``.
- ``open``/``close``: the price of the minute's first/last trade by trade id (the engine's
  ids follow its order, and every trade of a batch has the batch's ``executed_at``);
  ``first_trade_id``/``last_trade_id`` say which, so an upsert keeps the right ones.
- ``volume``: base quantity; ``quote_volume``: ``price × quantity`` cut to 8 decimals per
  trade, as the engine's ``quote_quantity`` is (the fee volumes use the same amounts).
- ``trades``: how many. Minutes without trades have no row.

The upgrade backfills the table from the trades already stored. No foreign key to
``markets``: like the worker's other rows (0003) it would cost the group commit a lookup per
row for a symbol the worker has already checked.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
CREATE TABLE candles_1m (
    symbol VARCHAR(20) NOT NULL CHECK (symbol = UPPER(symbol)),
    bucket TIMESTAMPTZ NOT NULL
        CHECK (bucket = date_bin('1 minute', bucket, TIMESTAMPTZ '2000-01-01 00:00:00+00')),
    open DECIMAL(20,8) NOT NULL CHECK (open > 0),
    high DECIMAL(20,8) NOT NULL,
    low DECIMAL(20,8) NOT NULL CHECK (low > 0),
    close DECIMAL(20,8) NOT NULL CHECK (close > 0),
    volume DECIMAL(30,8) NOT NULL CHECK (volume > 0),
    quote_volume DECIMAL(30,8) NOT NULL CHECK (quote_volume >= 0),
    trades INTEGER NOT NULL CHECK (trades >= 1),
    first_trade_id BIGINT NOT NULL,
    last_trade_id BIGINT NOT NULL CHECK (last_trade_id >= first_trade_id),
    PRIMARY KEY (symbol, bucket),
    CONSTRAINT ck_candles_1m_range CHECK (
        low <= open AND open <= high AND low <= close AND close <= high)
);

INSERT INTO candles_1m (symbol, bucket, open, high, low, close, volume, quote_volume,
    trades, first_trade_id, last_trade_id)
SELECT symbol, date_bin('1 minute', executed_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
    (array_agg(price ORDER BY id))[1], max(price), min(price),
    (array_agg(price ORDER BY id DESC))[1], sum(quantity), sum(trunc(price * quantity, 8)),
    count(*), min(id), max(id)
FROM trades
WHERE executed_at IS NOT NULL
GROUP BY 1, 2
"""

DOWNGRADE = r"""
DROP TABLE IF EXISTS candles_1m
"""


def _statements(script: str) -> list[str]:
    """One statement at a time (asyncpg prepares each; no function bodies here)."""
    return [part.strip() for part in script.split(";") if part.strip()]


def upgrade() -> None:
    for statement in _statements(UPGRADE):
        op.execute(statement)


def downgrade() -> None:
    for statement in _statements(DOWNGRADE):
        op.execute(statement)
