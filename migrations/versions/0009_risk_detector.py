"""The manipulation detector's idempotence: a finding's ``metadata.dedupe_key`` is unique,
so a restarted ``tradegraph risk-monitor`` that sees the same activity again inserts
nothing twice (``ON CONFLICT DO NOTHING``). Rows without a key are untouched.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE UNIQUE INDEX uq_risk_events_dedupe_key ON risk_events "
        "((metadata->>'dedupe_key')) WHERE metadata ? 'dedupe_key'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS uq_risk_events_dedupe_key")
