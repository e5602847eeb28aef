from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from engine import SCALE, FeeRates, MarketSpec, fee_for, from_units, notional, to_units
from engine.units import show

units = st.integers(min_value=-(10**22), max_value=10**22)


def test_to_units_is_exact() -> None:
    assert to_units(Decimal("1.23456789")) == 123_456_789
    assert to_units("50000") == 50_000 * SCALE
    assert to_units(3) == 3 * SCALE
    assert to_units(Decimal("0.00000001")) == 1
    assert to_units(Decimal("-2.5")) == -250_000_000
    assert to_units("0.5") == 50_000_000
    assert to_units("007.10") == 710_000_000
    assert show(710_000_000) == "7.1"
    assert show(-5) == "-0.00000005"
    assert show(100 * SCALE) == "100"


@pytest.mark.parametrize("bad", ["0.000000001", "1.123456789", "NaN", "Infinity", "abc", 1.5, True])
def test_to_units_refuses_what_it_would_have_to_round(bad: object) -> None:
    with pytest.raises(ValueError):
        to_units(bad)  # type: ignore[arg-type]


@given(units)
def test_show_is_the_normalised_decimal(amount: int) -> None:
    assert show(amount) == format(from_units(amount).normalize(), "f")
    assert to_units(show(amount)) == amount


@given(
    st.text(alphabet="0123456789.-+eE _\u0660\u00b2", max_size=14)
    | units.map(lambda u: format(from_units(u), "f"))
)
@example("1E1000000")  # beyond the decimal context's exponent: refused, not an Overflow
@example("0E30")  # zero, whatever its exponent: 0 units
def test_the_string_fast_path_agrees_with_decimal(text: str) -> None:
    """Plain digit strings skip Decimal; whatever they are, the answer is Decimal's."""
    try:
        expected: int | str = _decimal_units(text)
    except ValueError:
        expected = "refused"
    try:
        got: int | str = to_units(text)
    except ValueError:
        got = "refused"
    assert got == expected


def _decimal_units(text: str) -> int:
    """The definition: Decimal's reading of ``text``, refused unless exact in 1e-8 units
    and below 10**30."""
    from decimal import InvalidOperation

    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError(text) from None
    if not amount.is_finite() or (amount and amount.adjusted() >= 30):
        raise ValueError(text)  # (adjusted(), not abs(): 1E1000000 overflows the context)
    scaled = amount.scaleb(8)
    if scaled != scaled.to_integral_value():
        raise ValueError(text)
    return int(scaled)


def test_from_units_has_eight_decimals() -> None:
    assert str(from_units(123_456_789)) == "1.23456789"
    assert str(from_units(5 * SCALE)) == "5.00000000"
    assert from_units(-5) == Decimal("-0.00000005")
    assert to_units(from_units(987_654_321_012)) == 987_654_321_012


def test_notional_and_fee_rounding() -> None:
    assert notional(to_units("50000.01"), to_units("0.00001")) == to_units("0.5000001")
    assert fee_for(1_000_000, 1500) == 1500
    assert fee_for(1, 1000) == 1  # 0.001 of a unit rounds up to one unit
    assert fee_for(666_667, 1500) == 1001  # 1000.0005 rounds up
    assert fee_for(0, 1500) == 0


def test_market_grid_must_make_notionals_exact() -> None:
    with pytest.raises(ValueError, match="multiple of 1e8"):
        MarketSpec("BTC-USDT", "BTC", "USDT", tick_size=1_000, lot_size=1_000)
    with pytest.raises(ValueError, match="BASE-QUOTE"):
        MarketSpec("BTCUSDT", "BTC", "USDT", tick_size=SCALE, lot_size=SCALE)
    with pytest.raises(ValueError, match="positive"):
        MarketSpec("BTC-USDT", "BTC", "USDT", tick_size=0, lot_size=SCALE)
    with pytest.raises(ValueError, match="min_notional"):
        MarketSpec("BTC-USDT", "BTC", "USDT", SCALE, SCALE, min_notional=-1)


def test_fee_rates_are_below_one_hundred_percent() -> None:
    with pytest.raises(ValueError):
        FeeRates(1000, 1_000_000)
    with pytest.raises(ValueError):
        FeeRates(-1, 1000)


def test_huge_exponents_are_refused_before_they_become_integers() -> None:
    for text in ("1E+63000", "-1E+999999999", "1E+30"):
        with pytest.raises(ValueError, match="out of range"):
            to_units(text)
    assert to_units("1E+20") == 10**28
