"""Risk controls the matching engine enforces: per-market limits, price band and circuit
breaker; per-user trading suspension; per-asset position limits (a default and overrides).

- ``markets``: ``max_order_quantity`` / ``max_order_notional`` (NULL = no limit),
  ``price_band_pct`` (a limit order further than this from the reference price is refused;
  NULL = no band, the seed markets' default: an operator turns it on with
  setMarketRiskLimits), ``breaker_move_pct`` within ``breaker_window_seconds`` (the market halts
  itself; NULL = no breaker) for ``breaker_cooldown_seconds``; ``halted_until`` is when a
  breaker halt resumes by itself (NULL for an admin's halt, which waits for resumeMarket).
- ``users.trading_suspended``: an admin's suspension; the engine refuses places and amends.
- ``position_limits``: the largest position (holding plus open buys) of an asset; the row
  with ``user_id`` NULL is the default, a user's row overrides it; a NULL
  ``max_position`` is no row (no default limit; a user without an override).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
ALTER TABLE markets
    ADD COLUMN max_order_quantity DECIMAL(20,8) CHECK (max_order_quantity > 0),
    ADD COLUMN max_order_notional DECIMAL(20,8) CHECK (max_order_notional > 0),
    ADD COLUMN price_band_pct DECIMAL(6,2) CHECK (price_band_pct > 0 AND price_band_pct < 100),
    ADD COLUMN breaker_move_pct DECIMAL(6,2) CHECK (breaker_move_pct > 0 AND breaker_move_pct < 100),
    ADD COLUMN breaker_window_seconds INTEGER NOT NULL DEFAULT 60 CHECK (breaker_window_seconds > 0),
    ADD COLUMN breaker_cooldown_seconds INTEGER NOT NULL DEFAULT 300 CHECK (breaker_cooldown_seconds > 0),
    ADD COLUMN halted_until TIMESTAMPTZ;

UPDATE markets SET max_order_quantity = 1000, max_order_notional = 10000000
    WHERE symbol = 'BTC-USDT';
UPDATE markets SET max_order_quantity = 10000, max_order_notional = 10000000
    WHERE symbol = 'ETH-USDT';

ALTER TABLE users
    ADD COLUMN trading_suspended BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN suspension_reason TEXT;

CREATE TABLE position_limits (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT REFERENCES users(id),
    asset VARCHAR(20) NOT NULL CHECK (asset = UPPER(asset)),
    max_position DECIMAL(20,8) CHECK (max_position >= 0),
    created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP
);
CREATE UNIQUE INDEX uq_position_limits ON position_limits((COALESCE(user_id, 0)), asset);
CREATE TRIGGER trg_position_limits_updated_at
    BEFORE UPDATE ON position_limits
    FOR EACH ROW
    EXECUTE FUNCTION update_updated_at_column();

INSERT INTO position_limits (user_id, asset, max_position) VALUES
    (NULL, 'BTC', 10000),
    (NULL, 'ETH', 100000);
"""

DOWNGRADE = r"""
DROP TABLE IF EXISTS position_limits;
ALTER TABLE users DROP COLUMN IF EXISTS suspension_reason,
    DROP COLUMN IF EXISTS trading_suspended;
ALTER TABLE markets DROP COLUMN IF EXISTS halted_until,
    DROP COLUMN IF EXISTS breaker_cooldown_seconds,
    DROP COLUMN IF EXISTS breaker_window_seconds,
    DROP COLUMN IF EXISTS breaker_move_pct,
    DROP COLUMN IF EXISTS price_band_pct,
    DROP COLUMN IF EXISTS max_order_notional,
    DROP COLUMN IF EXISTS max_order_quantity;
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
