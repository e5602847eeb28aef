"""Risk admin views and login protection.

- ``risk_events``: ``resolution_note`` (at most 200 characters, the service's limit),
  ``resolved_at`` and ``resolved_by`` (the admin who resolved it) — set by
  ``resolveRiskEvent``; the seed's columns, checks and indexes are untouched. Two indexes
  for the admin filters: the rule (``metadata->>'rule'``) and ``created_at``.
- ``login_ips``: every address a user has logged in (or signed up) from, with when it was
  first and last seen and how many times, so a login from a new one is a ``new_ip`` event.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
ALTER TABLE risk_events
    ADD COLUMN resolution_note TEXT CHECK (char_length(resolution_note) <= 200),
    ADD COLUMN resolved_at TIMESTAMPTZ,
    ADD COLUMN resolved_by BIGINT REFERENCES users(id);

CREATE INDEX idx_risk_events_rule ON risk_events ((metadata->>'rule'), id DESC);
CREATE INDEX idx_risk_events_created_at ON risk_events (created_at);

CREATE TABLE login_ips (
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    ip INET NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_seen TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    count INTEGER NOT NULL DEFAULT 1 CHECK (count >= 1),
    PRIMARY KEY (user_id, ip)
)
"""

DOWNGRADE = r"""
DROP TABLE IF EXISTS login_ips;
DROP INDEX IF EXISTS idx_risk_events_created_at;
DROP INDEX IF EXISTS idx_risk_events_rule;
ALTER TABLE risk_events DROP COLUMN IF EXISTS resolved_by,
    DROP COLUMN IF EXISTS resolved_at,
    DROP COLUMN IF EXISTS resolution_note
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
