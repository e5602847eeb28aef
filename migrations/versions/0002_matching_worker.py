"""What the matching worker needs to store beside the seed's columns.

- orders.priority: the queue position within a price level (an amend that moves an order
  to the back of its level gives it a new one); the worker rebuilds its books from it.
- orders.cancel_reason: why a CANCELLED order was cancelled (user, IOC/FOK/market
  remainder, self-trade prevention, halt).
- trades.buyer_user_id / seller_user_id / taker_side: who traded and who took liquidity,
  so fills are read without joining orders twice.
- markets.book_sequence: the last order-book delta sequence, contiguous per symbol across
  restarts.
- processed_commands: every command id the worker has committed, with the reply it gave,
  so a replayed or retried command changes nothing and gets the original answer.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = [
    "ALTER TABLE orders ADD COLUMN priority BIGINT",
    "ALTER TABLE orders ADD COLUMN cancel_reason VARCHAR(20) CHECK (cancel_reason IN "
    "('USER', 'IOC', 'FOK', 'MARKET', 'SELF_TRADE', 'HALT'))",
    "ALTER TABLE orders ADD CONSTRAINT ck_orders_cancel_reason_only_when_cancelled "
    "CHECK (cancel_reason IS NULL OR status = 'CANCELLED')",
    "ALTER TABLE trades ADD COLUMN buyer_user_id BIGINT REFERENCES users(id)",
    "ALTER TABLE trades ADD COLUMN seller_user_id BIGINT REFERENCES users(id)",
    "ALTER TABLE trades ADD COLUMN taker_side VARCHAR(4) CHECK (taker_side IN ('BUY', 'SELL'))",
    "CREATE INDEX idx_trades_buyer_user ON trades(buyer_user_id, id DESC)",
    "CREATE INDEX idx_trades_seller_user ON trades(seller_user_id, id DESC)",
    "ALTER TABLE markets ADD COLUMN book_sequence BIGINT NOT NULL DEFAULT 0 "
    "CHECK (book_sequence >= 0)",
    """CREATE TABLE processed_commands (
        command_id VARCHAR(64) PRIMARY KEY,
        kind VARCHAR(32) NOT NULL,
        user_id BIGINT REFERENCES users(id),
        result JSONB NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP
    )""",
]

DOWNGRADE = [
    "DROP TABLE processed_commands",
    "ALTER TABLE markets DROP COLUMN book_sequence",
    "DROP INDEX idx_trades_seller_user",
    "DROP INDEX idx_trades_buyer_user",
    "ALTER TABLE trades DROP COLUMN taker_side",
    "ALTER TABLE trades DROP COLUMN seller_user_id",
    "ALTER TABLE trades DROP COLUMN buyer_user_id",
    "ALTER TABLE orders DROP CONSTRAINT ck_orders_cancel_reason_only_when_cancelled",
    "ALTER TABLE orders DROP COLUMN cancel_reason",
    "ALTER TABLE orders DROP COLUMN priority",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
