"""Integer amounts: every asset amount and price is an ``int`` in units of 1e-8.

``Decimal`` lives only at the edges (the API and the database); the engine computes with
integers so that nothing is ever rounded by accident. See docs/adr/0001-engine-integer-amounts.md.
"""

import functools
from decimal import Decimal, InvalidOperation
from typing import Final

# Literal Finals: the compiled engine inlines them (this module itself is not compiled, so
# that ``to_units`` refuses any value with a ValueError, as the edges expect).
SCALE: Final = 100_000_000
"""Units per whole coin: amounts are stored like PostgreSQL ``DECIMAL(20, 8)``."""

DECIMALS: Final = 8
MAX_AMOUNT: Final = 99_999_999_999_999_999_999
"""The largest amount or price the record holds (``DECIMAL(20, 8)``: 999,999,999,999.99999999).
The engine refuses anything larger, and any deposit that would make the exchange hold more
of an asset, so no balance, order or trade can ever fail to be written."""
_QUANTUM = Decimal(1).scaleb(-DECIMALS)
_MAX_EXPONENT = 30
"""Amounts of 10**30 and more are refused before they become integers: ``int()`` of
``1E+63000`` alone takes a quarter of a second, and no amount that large can be valid."""
PPM: Final = 1_000_000
"""Fee rates are parts per million: 0.100 % is 1000."""


def to_units(value: Decimal | str | int) -> int:
    """Convert a decimal amount to integer units, refusing anything that is not exact.

    Raises ``ValueError`` for NaN, infinities, amounts with more than 8 decimals and
    magnitudes of 10**30 or more; nothing is ever rounded.
    """
    if type(value) is str:
        # Fast path for what the API sends: plain ASCII digits with at most 8 decimals.
        whole, dot, fraction = value.partition(".")
        if (
            whole.isascii()
            and whole.isdigit()
            and fraction.isascii()
            and (fraction.isdigit() if dot else not fraction)
            and len(fraction) <= DECIMALS
        ):
            return int(whole) * SCALE + (int(fraction.ljust(DECIMALS, "0")) if dot else 0)
    if isinstance(value, bool) or not isinstance(value, Decimal | str | int):
        raise ValueError(f"not a decimal amount: {value!r}")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    if amount and amount.adjusted() >= _MAX_EXPONENT:
        raise ValueError(f"out of range: {value!r}")
    scaled = amount.scaleb(DECIMALS)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"more than {DECIMALS} decimals: {value!r}")
    return int(scaled)


def from_units(units: int) -> Decimal:
    """Convert integer units back to a ``Decimal`` with exactly 8 decimals."""
    return Decimal(units).scaleb(-DECIMALS).quantize(_QUANTUM)


def notional(price: int, quantity: int) -> int:
    """Quote value of ``quantity`` base units at ``price``; exact on a valid market grid."""
    return price * quantity // SCALE


def fee_for(received: int, rate_ppm: int) -> int:
    """Fee on ``received`` units at ``rate_ppm``, rounded up to the next unit (1e-8)."""
    return -(-received * rate_ppm // PPM)


@functools.lru_cache(maxsize=1 << 16)
def show(units: int) -> str:
    """Integer units as a plain decimal string for messages (``5``, ``0.0001``).

    Cached: prices, sizes and fees repeat all day, and every amount of every event is
    shown in messages and written to the database."""
    whole, fraction = divmod(-units if units < 0 else units, SCALE)
    sign = "-" if units < 0 else ""
    if not fraction:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{fraction:08d}".rstrip("0")
