"""Orders: an UPDATE that sets ``updated_at`` itself keeps it.

The matching worker chooses each batch's time when it matches the batch, before the
commit, and replies with the orders as stored, timestamps included; it writes that time as
``created_at``/``updated_at``. The trigger of 0001 overwrote ``updated_at`` with the
transaction's time on every UPDATE, so the stored row could not be told in advance. Now
it only moves ``updated_at`` when the UPDATE leaves it unchanged (any other writer, as
before).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION orders_updated_at() RETURNS TRIGGER AS $$
        BEGIN
            IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
                NEW.updated_at = CURRENT_TIMESTAMP;
            END IF;
            RETURN NEW;
        END;
        $$ LANGUAGE plpgsql
        """
    )
    op.execute("DROP TRIGGER trg_orders_updated_at ON orders")
    op.execute(
        "CREATE TRIGGER trg_orders_updated_at BEFORE UPDATE ON orders "
        "FOR EACH ROW EXECUTE FUNCTION orders_updated_at()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER trg_orders_updated_at ON orders")
    op.execute(
        "CREATE TRIGGER trg_orders_updated_at BEFORE UPDATE ON orders "
        "FOR EACH ROW EXECUTE FUNCTION update_updated_at_column()"
    )
    op.execute("DROP FUNCTION orders_updated_at()")
