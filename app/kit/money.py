"""Money at the edges: the one strict parser for amounts in, plain strings out.

Every amount a client sends (price, quantity, amount...) is parsed by :func:`parse_amount`
and nothing else. It looks at the raw text *before* any ``Decimal`` arithmetic, so a typo
can never become a different number: only ASCII ``digits[.digits]`` is an amount — no sign,
no exponent, no ``_`` separators, no spaces, no other scripts' digits, no ``NaN`` — with at
most :data:`MAX_DECIMALS` decimals and at most :data:`MAX_INTEGER_DIGITS` digits before the
point, so it fits the ``DECIMAL(20,8)`` columns.
"""

from __future__ import annotations

import re
from decimal import Decimal

from app.wire import decimal_text

MAX_DECIMALS = 8
MAX_INTEGER_DIGITS = 12
MAX_AMOUNT = Decimal("999999999999.99999999")
"""The largest amount ``DECIMAL(20,8)`` holds."""

_AMOUNT = re.compile(
    rf"(?:0|[1-9][0-9]{{0,{MAX_INTEGER_DIGITS - 1}}})(?:\.([0-9]+))?", flags=re.ASCII
)


class InvalidAmount(ValueError):
    """The text is not an amount; the message says why, for the client."""


def parse_amount(text: str) -> Decimal:
    """The amount ``text`` spells exactly, or :class:`InvalidAmount`."""
    match = _AMOUNT.fullmatch(text)
    if match is None:
        if len(text) <= 64 and re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", text, flags=re.ASCII):
            if text.startswith("0") and not text.startswith("0."):
                raise InvalidAmount("an amount has no leading zeros")
            raise InvalidAmount(f"an amount is at most {MAX_AMOUNT}")
        raise InvalidAmount(
            'an amount is a string of ASCII digits with an optional "." and decimals, '
            'such as "0.25" (no sign, exponent, spaces or separators)'
        )
    decimals = match.group(1)
    if decimals is not None and len(decimals) > MAX_DECIMALS:
        raise InvalidAmount(f"an amount has at most {MAX_DECIMALS} decimals")
    return Decimal(text)


def plain(value: Decimal) -> Decimal:
    """``value`` without trailing zeros and never in exponent form (100, not 1E+2)."""
    return Decimal(format(value.normalize(), "f"))


plain_text = decimal_text
"""``value`` as a string without trailing zeros or exponent (``"100"``, not ``"1E+2"``): the
wire's one spelling of an amount (:func:`app.wire.decimal_text`)."""
