"""Every malformed command is rejected with a code and changes nothing."""

from collections.abc import Callable

import pytest

from engine import (
    COMPILED,
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    Command,
    CommandRejected,
    Deposit,
    Engine,
    Event,
    HaltMarket,
    OrderType,
    PlaceOrder,
    RejectCode,
    ResumeMarket,
    SetFeeTier,
    Side,
    TimeInForce,
    Withdraw,
)
from engine.units import MAX_AMOUNT
from tests.engine.factories import BTC, create_engine, limit, u

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
INVALID = RejectCode.INVALID_INPUT


def funded() -> Engine:
    engine = create_engine({1: {"USDT": "100000", "BTC": "2"}, 2: {"BTC": "1"}})
    engine.process(limit(2, SELL, "0.5", "50000"))
    engine.process(limit(1, BUY, "0.5", "40000"))
    return engine


PLACE_REJECTIONS = [
    (PlaceOrder(1, "DOGE-USDT", BUY, LIMIT, u("1"), u("1")), RejectCode.UNKNOWN_SYMBOL, "symbol"),
    (PlaceOrder(1, BTC, BUY, LIMIT, 0, u("40000")), INVALID, "quantity"),
    (PlaceOrder(1, BTC, BUY, LIMIT, -u("1"), u("40000")), INVALID, "quantity"),
    (PlaceOrder(1, BTC, BUY, LIMIT, u("0.000015"), u("40000")), INVALID, "quantity"),
    (PlaceOrder(1, BTC, BUY, LIMIT, u("1"), None), INVALID, "price"),
    (PlaceOrder(1, BTC, BUY, LIMIT, u("1"), 0), INVALID, "price"),
    (PlaceOrder(1, BTC, BUY, LIMIT, u("1"), -u("1")), INVALID, "price"),
    (PlaceOrder(1, BTC, BUY, LIMIT, u("1"), u("40000.005")), INVALID, "price"),
    (PlaceOrder(1, BTC, BUY, LIMIT, u("0.0002"), u("40000")), INVALID, "quantity"),  # 8 USDT
    (PlaceOrder(1, BTC, BUY, MARKET, u("1"), u("40000")), INVALID, "price"),
    (PlaceOrder(1, BTC, BUY, MARKET, u("1"), None, post_only=True), INVALID, "post_only"),
    (
        PlaceOrder(1, BTC, BUY, LIMIT, u("1"), u("40000"), TimeInForce.IOC, post_only=True),
        INVALID,
        "post_only",
    ),
    (
        PlaceOrder(1, BTC, BUY, LIMIT, u("1"), u("40000"), TimeInForce.FOK, post_only=True),
        INVALID,
        "post_only",
    ),
    (
        PlaceOrder(1, BTC, BUY, LIMIT, u("1"), u("40000"), client_order_id=""),
        INVALID,
        "client_order_id",
    ),
    (
        PlaceOrder(1, BTC, BUY, LIMIT, u("1"), u("40000"), client_order_id="x" * 65),
        INVALID,
        "client_order_id",
    ),
    (PlaceOrder(1, BTC, BUY, LIMIT, u("3"), u("40000")), RejectCode.INSUFFICIENT_BALANCE, None),
    (PlaceOrder(1, BTC, SELL, LIMIT, u("2.1"), u("60000")), RejectCode.INSUFFICIENT_BALANCE, None),
    (PlaceOrder(3, BTC, BUY, MARKET, u("1")), RejectCode.INSUFFICIENT_BALANCE, None),
    (PlaceOrder(3, BTC, SELL, MARKET, u("1")), RejectCode.INSUFFICIENT_BALANCE, None),
    (
        PlaceOrder(1, BTC, BUY, LIMIT, u("0.1"), u("50000"), post_only=True),
        RejectCode.POST_ONLY_WOULD_TAKE,
        "price",
    ),
    # Amounts the record (DECIMAL(20, 8)) cannot hold: a tiny quantity at a huge price
    # would be affordable, and used to make the worker's commit fail.
    (PlaceOrder(1, BTC, BUY, LIMIT, u("0.0001"), u("1000000000000")), INVALID, "price"),
    (PlaceOrder(1, BTC, BUY, LIMIT, u("1000000000000"), u("0.01")), INVALID, "quantity"),
    (PlaceOrder(1, BTC, BUY, MARKET, u("1000000000000")), INVALID, "quantity"),
]


WRONGLY_TYPED: list[tuple[Callable[[], PlaceOrder], str]] = [
    (lambda: PlaceOrder(1, BTC, "HOLD", LIMIT, u("1"), u("1")), "side"),  # type: ignore[arg-type]
    (lambda: PlaceOrder(1, BTC, BUY, "STOP", u("1"), u("1")), "type"),  # type: ignore[arg-type]
    (
        lambda: PlaceOrder(1, BTC, BUY, LIMIT, u("1"), u("100"), "GTD"),  # type: ignore[arg-type]
        "time_in_force",
    ),
    (lambda: PlaceOrder(1, BTC, BUY, LIMIT, 1.0, u("40000")), "quantity"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("command", "code", "field"), PLACE_REJECTIONS)
def test_bad_place_is_rejected_and_changes_nothing(
    command: PlaceOrder, code: RejectCode, field: str | None
) -> None:
    assert_rejected(command, code, field)


@pytest.mark.parametrize(("build", "field"), WRONGLY_TYPED)
def test_a_wrongly_typed_field_is_refused(build: Callable[[], PlaceOrder], field: str) -> None:
    """The pure engine rejects it like any bad value. Compiled, a command checks its fields'
    declared types when it is built, so it cannot even be made (the worker's codec checks
    every type before it builds one)."""
    if COMPILED:
        with pytest.raises(TypeError):
            build()
    else:
        assert_rejected(build(), INVALID, field)


def assert_rejected(command: PlaceOrder, code: RejectCode, field: str | None) -> None:
    engine = funded()
    before = engine.snapshot()
    events = engine.process(command)
    assert len(events) == 1
    rejected = events[0]
    assert isinstance(rejected, CommandRejected)
    assert (rejected.code, rejected.field) == (code, field)
    assert rejected.message
    assert engine.snapshot() == before


OTHER_REJECTIONS = [
    (Deposit(1, "DOGE", u("1")), INVALID, "asset"),
    (Deposit(1, "USDT", 0), INVALID, "amount"),
    (Deposit(1, "USDT", -5), INVALID, "amount"),
    (Deposit(1, "USDT", MAX_AMOUNT + 1), INVALID, "amount"),
    (Deposit(3, "BTC", MAX_AMOUNT - u("2")), RejectCode.RISK_REJECTED, "amount"),  # 3 held
    (Withdraw(1, "USDT", u("100000.00000001")), RejectCode.INSUFFICIENT_BALANCE, "amount"),
    (Withdraw(1, "USDT", u("80001")), RejectCode.INSUFFICIENT_BALANCE, "amount"),  # 20000 locked
    (Withdraw(1, "USDT", 0), INVALID, "amount"),
    (SetFeeTier(1, 6), INVALID, "tier"),
    (SetFeeTier(1, 0), INVALID, "tier"),
    (HaltMarket("DOGE-USDT", "x"), RejectCode.UNKNOWN_SYMBOL, "symbol"),
    (ResumeMarket(BTC), INVALID, "symbol"),
    (CancelAllOrders(1, "DOGE-USDT"), RejectCode.UNKNOWN_SYMBOL, "symbol"),
    (CancelOrder(1), INVALID, "id"),
    (CancelOrder(1, 2, "both"), INVALID, "id"),
    (CancelOrder(1, 1), RejectCode.NOT_FOUND, "id"),  # user 2's order
    (CancelOrder(1, 99), RejectCode.NOT_FOUND, "id"),
    (CancelOrder(1, None, "nope"), RejectCode.NOT_FOUND, "client_order_id"),
    (AmendOrder(1, 2), INVALID, None),
    (AmendOrder(1, 1, u("0.1")), RejectCode.NOT_FOUND, "id"),
    (AmendOrder(1, 2, u("0.000011")), INVALID, "quantity"),
    (AmendOrder(1, 2, 0), INVALID, "quantity"),
    (AmendOrder(1, 2, None, u("40000.001")), INVALID, "price"),
    (AmendOrder(1, 2, u("0.0002")), INVALID, "quantity"),  # below the minimum notional
    (AmendOrder(1, 2, u("2.6")), RejectCode.INSUFFICIENT_BALANCE, None),  # 104000 > 100000
    (AmendOrder(1, 2, None, MAX_AMOUNT + 1), INVALID, "price"),
]


@pytest.mark.parametrize(("command", "code", "field"), OTHER_REJECTIONS)
def test_bad_command_is_rejected_and_changes_nothing(
    command: Command, code: RejectCode, field: str | None
) -> None:
    engine = funded()
    before = engine.snapshot()
    events = engine.process(command)
    assert [(e.code, e.field) for e in events if isinstance(e, CommandRejected)] == [(code, field)]
    assert len(events) == 1
    assert engine.snapshot() == before


def test_the_exchange_holds_up_to_the_largest_amount_of_an_asset() -> None:
    engine = funded()  # 3 BTC held in all
    room = MAX_AMOUNT - u("3")
    assert not _rejected(engine.process(Deposit(3, "BTC", room)))
    assert _rejected(engine.process(Deposit(3, "BTC", 1))) == [RejectCode.RISK_REJECTED]
    assert not _rejected(engine.process(Withdraw(3, "BTC", u("1"))))
    assert not _rejected(engine.process(Deposit(4, "BTC", u("1"))))
    # A restored engine knows what is held, too.
    restored = Engine.restore(engine.snapshot())
    assert _rejected(restored.process(Deposit(5, "BTC", 1))) == [RejectCode.RISK_REJECTED]


def _rejected(events: list[Event]) -> list[RejectCode]:
    return [e.code for e in events if isinstance(e, CommandRejected)]


def test_unknown_command_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        create_engine().process("PlaceOrder")  # type: ignore[arg-type]


def test_plain_string_enum_values_are_accepted_by_the_pure_engine() -> None:
    def build() -> PlaceOrder:
        return PlaceOrder(1, BTC, "BUY", "LIMIT", u("0.01"), u("1000"), "GTC")  # type: ignore[arg-type]

    if COMPILED:  # a compiled command holds enum members only
        with pytest.raises(TypeError):
            build()
        return
    engine = create_engine({1: {"USDT": "1000"}})
    events = engine.process(build())
    assert events[0].side is Side.BUY  # type: ignore[union-attr]
    assert events[0].time_in_force is TimeInForce.GTC  # type: ignore[union-attr]
