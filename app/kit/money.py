"""Decimal helpers for the edges (database rows in, JSON strings out)."""

from __future__ import annotations

from decimal import Decimal


def plain(value: Decimal) -> Decimal:
    """``value`` without trailing zeros and never in exponent form (100, not 1E+2)."""
    return Decimal(format(value.normalize(), "f"))
