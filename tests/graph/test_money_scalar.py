"""The one parser for amounts in: exact for every well-formed amount, strict for the rest."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.kit.money import MAX_AMOUNT, InvalidAmount, parse_amount
from graph.scalars import InvalidValue, MoneyDefinition
from tests.graph.test_input_edges import NOT_MONEY


@given(
    st.decimals(
        min_value=Decimal(0), max_value=MAX_AMOUNT, places=8, allow_nan=False, allow_infinity=False
    )
)
def test_every_amount_in_range_parses_to_itself(value: Decimal) -> None:
    assert parse_amount(format(value, "f")) == value
    assert parse_amount(format(value.normalize(), "f")) == value


@pytest.mark.parametrize(
    "text", ["0", "0.5", "1", "1.50000000", "30000", "0.00000001", "999999999999.99999999"]
)
def test_well_formed_amounts_are_accepted_exactly(text: str) -> None:
    assert parse_amount(text) == Decimal(text)
    assert MoneyDefinition.parse_value is not None
    assert MoneyDefinition.parse_value(text) == Decimal(text)


@pytest.mark.parametrize("text", NOT_MONEY)
def test_everything_else_is_refused_before_any_arithmetic(text: str) -> None:
    with pytest.raises(InvalidAmount):
        parse_amount(text)
    assert MoneyDefinition.parse_value is not None
    assert isinstance(MoneyDefinition.parse_value(text), InvalidValue)


@pytest.mark.parametrize("number", [1, 0.5, 29000.5, True, None])
def test_json_numbers_are_not_amounts(number: object) -> None:
    assert MoneyDefinition.parse_value is not None
    assert isinstance(MoneyDefinition.parse_value(number), InvalidValue)


def test_amounts_out_are_plain_strings() -> None:
    assert MoneyDefinition.serialize is not None
    assert MoneyDefinition.serialize(Decimal("1E+2")) == "100"
    assert MoneyDefinition.serialize(Decimal("0.50000000")) == "0.5"
