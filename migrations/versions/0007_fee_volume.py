"""Volume fee tiers: the 30-day quote volume the fee job last gave the matching worker.

``users.fee_volume_30d`` is written by the worker when it applies the fee job's automatic
tier change (``set_fee_tier`` with ``automatic``): the job compares each user's exact
30-day volume and tier with it and sends nothing when neither changed, so a rerun changes
nothing. NULL means the job never ran for that user (read as 0).

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # brief: the fee tier follows the 30-day quote volume (admin may override).
    op.execute(
        "ALTER TABLE users ADD COLUMN fee_volume_30d DECIMAL(30,8) CHECK (fee_volume_30d >= 0)"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE users DROP COLUMN fee_volume_30d")
