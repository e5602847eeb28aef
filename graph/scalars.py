"""The ``Decimal`` scalar, strict: every amount in the schema is parsed here, and only here.

An amount in is a JSON or GraphQL *string* that :func:`app.kit.money.parse_amount` accepts
(ASCII ``digits[.digits]``, at most 8 decimals, at most 999999999999.99999999). JSON numbers
and GraphQL number literals are refused: a float cannot be trusted to be the amount meant.

A refused value does not fail coercion (graphql-core would then lose which argument it was
and word the error its own way): it becomes an :class:`InvalidValue`, which
:class:`graph.inputs.InputGuard` turns into a top-level ``INVALID_INPUT`` error naming the
argument, before the resolver runs. Amounts out are plain strings (``"100"``, never
``"1E+2"``).

``SignedDecimal`` is the same with an optional leading ``-``, for figures that can be
negative (a ticker's change); the ``Decimal`` scalar itself never takes a sign.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NewType

from graphql import StringValueNode, ValueNode
from strawberry.types.scalar import ScalarDefinition

from app.kit.money import InvalidAmount, parse_amount, plain_text

NOT_A_STRING = 'an amount is a string such as "0.25", not a number'


@dataclass(frozen=True, slots=True)
class InvalidValue:
    """An input value its scalar refused; ``message`` says why, for the client."""

    message: str


def _parse(value: object) -> Decimal | InvalidValue:
    if not isinstance(value, str):
        return InvalidValue(NOT_A_STRING)
    try:
        return parse_amount(value)
    except InvalidAmount as refusal:
        return InvalidValue(str(refusal))


def _parse_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> object:
    if isinstance(node, StringValueNode):
        return _parse(node.value)
    return InvalidValue(NOT_A_STRING)


def _serialize(value: object) -> str:
    if isinstance(value, Decimal):
        return plain_text(value)
    return str(value)


MoneyDefinition = ScalarDefinition(
    name="Decimal",
    description=(
        "An exact amount as a string of ASCII digits with an optional '.' and at most 8 "
        'decimals, such as "0.25" (at most 999999999999.99999999; no sign, exponent or '
        "spaces; never a JSON number)."
    ),
    specified_by_url=None,
    serialize=_serialize,
    parse_value=_parse,
    parse_literal=_parse_literal,
    origin=Decimal,
)


SignedDecimal = NewType("SignedDecimal", Decimal)
"""An amount that may be negative (a price change): output only in today's schema."""


def _parse_signed(value: object) -> Decimal | InvalidValue:
    if isinstance(value, str) and value.startswith("-"):
        parsed = _parse(value[1:])
        return -parsed if isinstance(parsed, Decimal) else parsed
    return _parse(value)


def _parse_signed_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> object:
    if isinstance(node, StringValueNode):
        return _parse_signed(node.value)
    return InvalidValue(NOT_A_STRING)


SignedDecimalDefinition = ScalarDefinition(
    name="SignedDecimal",
    description=(
        "An exact signed amount as a string: a Decimal with an optional leading '-', "
        'such as "-12.5" or "3" (never a JSON number, never an exponent).'
    ),
    specified_by_url=None,
    serialize=_serialize,
    parse_value=_parse_signed,
    parse_literal=_parse_signed_literal,
)
