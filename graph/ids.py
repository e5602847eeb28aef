"""IDs are the database ids as strings; anything else names nothing."""

from __future__ import annotations

_MAX_ID = 2**63 - 1


def parse_id(value: str) -> int | None:
    """The row id ``value`` names, or ``None`` if it cannot name a row."""
    value = value.strip()
    if not value.isascii() or not value.isdigit() or not 0 < int(value) <= _MAX_ID:
        return None
    return int(value)
