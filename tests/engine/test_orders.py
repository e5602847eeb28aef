"""Order rules: IOC, FOK, post-only, market orders, self-trade prevention, idempotency,
amend, cancel, cancel-all, halts and the open-order limit."""

from collections.abc import Sequence

from engine import (
    AmendOrder,
    BalanceChanged,
    BalanceReason,
    BookLevelChanged,
    CancelAllOrders,
    CancelOrder,
    CancelReason,
    CommandRejected,
    Deposit,
    Engine,
    HaltMarket,
    MarketHalted,
    MarketResumed,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderDuplicate,
    OrderStatus,
    OrderUpdated,
    RejectCode,
    ResumeMarket,
    RiskEventRaised,
    RiskEventType,
    RiskSeverity,
    Side,
    TimeInForce,
    TradeExecuted,
)
from tests.engine.factories import (
    BTC,
    ETH,
    balances,
    create_engine,
    limit,
    market,
    of_type,
    only,
    u,
)

BUY, SELL = Side.BUY, Side.SELL
IOC, FOK = TimeInForce.IOC, TimeInForce.FOK


def book() -> Engine:
    """Asks: 0.1 @ 50000 (user 2), 0.2 @ 50100 (user 3). Bids: 0.1 @ 49000 (user 4)."""
    engine = create_engine(
        {
            1: {"USDT": "100000", "BTC": "5"},
            2: {"BTC": "5"},
            3: {"BTC": "5"},
            4: {"USDT": "100000"},
        }
    )
    engine.process(limit(2, SELL, "0.1", "50000"))  # order 1
    engine.process(limit(3, SELL, "0.2", "50100"))  # order 2
    engine.process(limit(4, BUY, "0.1", "49000"))  # order 3
    return engine


def kinds(events: Sequence[object]) -> list[str]:
    return [type(e).__name__ for e in events]


# ---------------------------------------------------------------- IOC / FOK


def test_ioc_fills_what_it_can_and_cancels_the_rest() -> None:
    engine = book()
    events = engine.process(limit(1, BUY, "0.25", "50000", tif=IOC))
    assert kinds(events) == [
        "OrderAccepted",
        "BalanceChanged",  # lock 12500
        "TradeExecuted",
        "BalanceChanged",
        "BalanceChanged",
        "BalanceChanged",
        "BalanceChanged",
        "BalanceChanged",
        "BalanceChanged",
        "BalanceChanged",
        "BalanceChanged",
        "OrderUpdated",  # maker filled
        "BookLevelChanged",
        "OrderUpdated",  # taker partial
        "OrderCancelled",
        "BalanceChanged",  # unlock the remainder's 7500
    ]
    cancelled = only(events, OrderCancelled)
    assert (cancelled.order_id, cancelled.filled_quantity, cancelled.reason) == (
        4,
        u("0.1"),
        CancelReason.IOC,
    )
    assert events[-1] == BalanceChanged(
        1, "USDT", u("7500"), -u("7500"), u("95000"), 0, BalanceReason.ORDER_UNLOCK, 4
    )
    assert engine.open_order(4) is None


def test_ioc_without_liquidity_is_accepted_then_cancelled() -> None:
    engine = book()
    events = engine.process(limit(1, BUY, "0.1", "45000", tif=IOC))
    assert kinds(events) == ["OrderAccepted", "BalanceChanged", "OrderCancelled", "BalanceChanged"]
    assert engine.balance(1, "USDT") == (u("100000"), 0)


def test_fok_that_cannot_fill_completely_does_nothing_but_cancel() -> None:
    engine = book()
    before = engine.depth(BTC, SELL)
    events = engine.process(limit(1, BUY, "0.31", "50100", tif=FOK))
    assert of_type(events, TradeExecuted) == []
    assert only(events, OrderCancelled).reason is CancelReason.FOK
    assert engine.depth(BTC, SELL) == before
    assert engine.balance(1, "USDT") == (u("100000"), 0)


def test_fok_that_can_fill_fills_completely_across_levels() -> None:
    engine = book()
    events = engine.process(limit(1, BUY, "0.3", "50100", tif=FOK))
    assert [t.quantity for t in of_type(events, TradeExecuted)] == [u("0.1"), u("0.2")]
    assert of_type(events, OrderUpdated)[-1].status is OrderStatus.FILLED
    assert of_type(events, OrderCancelled) == []


def test_fok_counts_only_liquidity_ahead_of_the_owners_own_order() -> None:
    engine = book()
    engine.process(limit(1, SELL, "0.1", "50000"))  # own order, behind user 2's at 50000
    # 0.4 would be on offer up to 50100 without the own order in the way.
    events = engine.process(limit(1, BUY, "0.25", "50100", tif=FOK))
    assert of_type(events, TradeExecuted) == []
    assert only(events, OrderCancelled).reason is CancelReason.FOK


# ---------------------------------------------------------------- post-only


def test_post_only_rests_when_it_would_not_take() -> None:
    engine = book()
    events = engine.process(limit(1, BUY, "0.1", "49999.99", post_only=True))
    assert only(events, OrderAccepted).post_only is True
    assert engine.depth(BTC, BUY)[0] == (u("49999.99"), u("0.1"))


def test_post_only_that_would_take_is_rejected() -> None:
    engine = book()
    before = engine.snapshot()
    rejected = only(engine.process(limit(1, SELL, "0.1", "49000", post_only=True)), CommandRejected)
    assert rejected.code is RejectCode.POST_ONLY_WOULD_TAKE
    assert engine.snapshot() == before


# ---------------------------------------------------------------- market orders


def test_market_buy_is_limited_by_available_quote() -> None:
    engine = create_engine({1: {"USDT": "1000"}, 2: {"BTC": "1"}})
    engine.process(limit(2, SELL, "0.01", "50000"))  # 500 USDT
    engine.process(limit(2, SELL, "0.02", "60000"))  # 1200 USDT
    events = engine.process(market(1, BUY, "1"))
    assert only(events, OrderAccepted).reserved == 0
    # 500 buys 0.01 @ 50000; the other 500 buy 0.00833 @ 60000 (499.8), not one lot more.
    assert [(t.price, t.quantity, t.buyer_fee) for t in of_type(events, TradeExecuted)] == [
        (u("50000"), u("0.01"), u("0.000015")),
        (u("60000"), u("0.00833"), u("0.0000125")),  # 0.000012495 rounded up
    ]
    cancelled = only(events, OrderCancelled)
    assert (cancelled.reason, cancelled.filled_quantity) == (CancelReason.MARKET, u("0.01833"))
    assert engine.balance(1, "USDT") == (u("0.2"), 0)
    assert engine.balance(1, "BTC") == (u("0.0183025"), 0)
    assert engine.depth(BTC, SELL) == [(u("60000"), u("0.01167"))]


def test_market_buy_needs_some_quote() -> None:
    engine = book()
    rejected = only(engine.process(market(5, BUY, "0.1")), CommandRejected)
    assert rejected.code is RejectCode.INSUFFICIENT_BALANCE


def test_market_sell_sweeps_bids_and_cancels_the_rest() -> None:
    engine = book()
    engine.process(limit(4, BUY, "0.1", "48000"))
    events = engine.process(market(1, SELL, "0.5"))
    assert [(t.price, t.quantity) for t in of_type(events, TradeExecuted)] == [
        (u("49000"), u("0.1")),
        (u("48000"), u("0.1")),
    ]
    cancelled = only(events, OrderCancelled)
    assert (cancelled.reason, cancelled.filled_quantity) == (CancelReason.MARKET, u("0.2"))
    assert engine.balance(1, "BTC") == (u("4.8"), 0)
    # 4900 + 4800, less 0.15 % taker fee
    assert engine.balance(1, "USDT") == (u("100000") + u("9700") - u("14.55"), 0)


def test_market_sell_needs_the_whole_quantity_available() -> None:
    engine = book()
    rejected = only(engine.process(market(4, SELL, "0.1")), CommandRejected)
    assert rejected.code is RejectCode.INSUFFICIENT_BALANCE


def test_market_order_on_an_empty_side_is_cancelled() -> None:
    engine = create_engine({1: {"USDT": "1000"}})
    events = engine.process(market(1, BUY, "0.1", ETH))
    assert kinds(events) == ["OrderAccepted", "OrderCancelled"]
    assert only(events, OrderCancelled).reason is CancelReason.MARKET


# ---------------------------------------------------------------- self-trade prevention


def test_self_trade_cancels_the_incoming_remainder_and_raises_a_risk_event() -> None:
    engine = book()
    engine.process(limit(1, SELL, "0.1", "50000"))  # order 4, own, behind user 2's
    events = engine.process(limit(1, BUY, "0.3", "50100"))  # order 5
    assert [(t.maker_order_id, t.quantity) for t in of_type(events, TradeExecuted)] == [
        (1, u("0.1"))
    ]
    cancelled = only(events, OrderCancelled)
    assert (cancelled.order_id, cancelled.reason, cancelled.filled_quantity) == (
        5,
        CancelReason.SELF_TRADE,
        u("0.1"),
    )
    risk = only(events, RiskEventRaised)
    assert (risk.user_id, risk.event_type, risk.severity, risk.order_id, risk.symbol) == (
        1,
        RiskEventType.SUSPICIOUS_ACTIVITY,
        RiskSeverity.LOW,
        5,
        BTC,
    )
    assert engine.open_order(4) is not None  # the resting own order is untouched
    # 0.1 bought at 50000; the other 0.2 x 50100 reserved came back.
    assert engine.balance(1, "USDT") == (u("95000"), 0)
    assert engine.balance(1, "BTC") == (u("4.9") + u("0.1") - u("0.00015"), u("0.1"))


def test_self_trade_at_the_front_trades_nothing() -> None:
    engine = book()
    engine.process(Deposit(2, "USDT", u("10000")))
    events = engine.process(limit(2, BUY, "0.1", "50000"))
    assert of_type(events, TradeExecuted) == []
    assert only(events, OrderCancelled).reason is CancelReason.SELF_TRADE
    assert len(of_type(events, RiskEventRaised)) == 1


# ---------------------------------------------------------------- idempotency


def test_repeated_client_order_id_returns_the_original_and_changes_nothing() -> None:
    engine = book()
    first = engine.process(limit(1, BUY, "0.1", "45000", client_order_id="abc"))
    order_id = only(first, OrderAccepted).order_id
    before = engine.snapshot()
    again = engine.process(limit(1, BUY, "0.5", "46000", client_order_id="abc"))
    assert again == [OrderDuplicate(order_id, 1, "abc")]
    assert engine.snapshot() == before
    engine.process(CancelOrder(1, None, "abc"))
    # Still the same order after it closed.
    assert engine.process(limit(1, BUY, "0.1", "45000", client_order_id="abc")) == [
        OrderDuplicate(order_id, 1, "abc")
    ]
    # Client order ids are per user.
    other = engine.process(limit(4, BUY, "0.1", "45000", client_order_id="abc"))
    assert only(other, OrderAccepted).client_order_id == "abc"


def test_rejected_place_does_not_use_up_the_client_order_id() -> None:
    engine = book()
    rejected = engine.process(limit(1, BUY, "10", "45000", client_order_id="big"))
    assert only(rejected, CommandRejected).code is RejectCode.INSUFFICIENT_BALANCE
    accepted = engine.process(limit(1, BUY, "1", "45000", client_order_id="big"))
    assert only(accepted, OrderAccepted).order_id == 4


# ---------------------------------------------------------------- cancel


def test_cancel_by_id_and_by_client_order_id() -> None:
    engine = book()
    events = engine.process(CancelOrder(2, 1))
    assert kinds(events) == ["OrderCancelled", "BalanceChanged", "BookLevelChanged"]
    assert only(events, OrderCancelled).reason is CancelReason.USER
    assert only(events, BookLevelChanged).quantity == 0
    engine.process(limit(1, BUY, "0.1", "45000", client_order_id="c1"))
    events = engine.process(CancelOrder(1, client_order_id="c1"))
    assert only(events, OrderCancelled).order_id == 4
    assert engine.balance(1, "USDT") == (u("100000"), 0)


def test_cancel_of_a_closed_order_is_order_not_open() -> None:
    engine = book()
    engine.process(limit(1, BUY, "0.1", "50000"))  # fills order 1 completely
    rejected = only(engine.process(CancelOrder(2, 1)), CommandRejected)
    assert rejected.code is RejectCode.ORDER_NOT_OPEN
    engine.process(limit(1, BUY, "0.1", "45000", client_order_id="x"))
    engine.process(CancelOrder(1, client_order_id="x"))
    rejected = only(engine.process(CancelOrder(1, client_order_id="x")), CommandRejected)
    assert rejected.code is RejectCode.ORDER_NOT_OPEN


def test_cancel_all_per_user_and_per_symbol() -> None:
    engine = create_engine({1: {"USDT": "100000"}, 2: {"USDT": "100000"}})
    engine.process(limit(1, BUY, "0.1", "40000"))  # 1
    engine.process(limit(1, BUY, "1", "2000", ETH))  # 2
    engine.process(limit(1, BUY, "0.1", "41000"))  # 3
    engine.process(limit(2, BUY, "0.1", "40000"))  # 4
    events = engine.process(CancelAllOrders(1, BTC))
    assert [e.order_id for e in of_type(events, OrderCancelled)] == [1, 3]
    assert engine.open_order(2) is not None
    events = engine.process(CancelAllOrders(1))
    assert [e.order_id for e in of_type(events, OrderCancelled)] == [2]
    assert engine.balance(1, "USDT") == (u("100000"), 0)
    assert engine.open_order(4) is not None
    assert engine.process(CancelAllOrders(1)) == []


# ---------------------------------------------------------------- amend


def test_lowering_the_quantity_keeps_priority() -> None:
    engine = book()
    engine.process(limit(3, SELL, "0.1", "50000"))  # order 4, behind order 1
    events = engine.process(AmendOrder(2, 1, u("0.05")))
    amended = only(events, OrderAmended)
    assert (amended.quantity, amended.reserved, amended.priority, amended.kept_priority) == (
        u("0.05"),
        u("0.05"),
        1,
        True,
    )
    assert only(events, BalanceChanged).reason is BalanceReason.ORDER_UNLOCK
    assert engine.balance(2, "BTC") == (u("4.95"), u("0.05"))
    trades = of_type(engine.process(limit(1, BUY, "0.05", "50000")), TradeExecuted)
    assert [t.maker_order_id for t in trades] == [1]


def test_raising_the_quantity_moves_to_the_back() -> None:
    engine = book()
    engine.process(limit(3, SELL, "0.1", "50000"))  # order 4
    events = engine.process(AmendOrder(2, 1, u("0.2")))
    amended = only(events, OrderAmended)
    assert (amended.kept_priority, amended.priority) == (False, 5)
    assert only(events, BalanceChanged).reason is BalanceReason.ORDER_LOCK
    assert engine.balance(2, "BTC") == (u("4.8"), u("0.2"))
    trades = of_type(engine.process(limit(1, BUY, "0.15", "50000")), TradeExecuted)
    assert [(t.maker_order_id, t.quantity) for t in trades] == [(4, u("0.1")), (1, u("0.05"))]


def test_changing_the_price_moves_to_the_back_of_the_new_level_and_adjusts_the_lock() -> None:
    engine = book()
    engine.process(limit(1, BUY, "0.1", "48000"))  # order 4
    events = engine.process(AmendOrder(4, 3, None, u("48000")))  # user 4's 0.1 @ 49000
    assert engine.balance(4, "USDT") == (u("95200"), u("4800"))
    assert [(c.price, c.quantity) for c in of_type(events, BookLevelChanged)] == [
        (u("49000"), 0),
        (u("48000"), u("0.2")),
    ]
    trades = of_type(engine.process(limit(2, SELL, "0.1", "48000")), TradeExecuted)
    assert [t.maker_order_id for t in trades] == [4]


def test_amend_to_the_filled_quantity_or_below_is_rejected() -> None:
    engine = book()
    engine.process(limit(1, BUY, "0.3", "50100"))  # fills 1 and 2 -> order 4 not left
    engine.process(limit(3, SELL, "0.3", "50000"))  # order 5
    engine.process(limit(1, BUY, "0.1", "50000"))  # order 5 filled 0.1
    for quantity in ("0.1", "0.05"):
        rejected = only(engine.process(AmendOrder(3, 5, u(quantity))), CommandRejected)
        assert (rejected.code, rejected.field) == (RejectCode.INVALID_INPUT, "quantity")
    amended = only(engine.process(AmendOrder(3, 5, u("0.15"))), OrderAmended)
    assert amended.reserved == u("0.05")
    assert engine.balance(3, "BTC") == (u("4.65"), u("0.05"))


def test_amended_price_that_crosses_trades_as_a_taker() -> None:
    engine = book()
    events = engine.process(AmendOrder(4, 3, u("0.15"), u("50000")))  # bid 49000 -> 50000
    assert kinds(events)[:4] == [
        "OrderAmended",
        "BalanceChanged",
        "BookLevelChanged",
        "TradeExecuted",
    ]
    trade = only(events, TradeExecuted)
    assert (trade.maker_order_id, trade.taker_order_id, trade.quantity, trade.price) == (
        1,
        3,
        u("0.1"),
        u("50000"),
    )
    assert trade.buyer_fee == u("0.00015")  # taker rate
    assert engine.depth(BTC, BUY) == [(u("50000"), u("0.05"))]
    assert engine.balance(4, "USDT") == (u("92500"), u("2500"))
    assert only(events, OrderAmended).reserved == u("7500")


def test_amend_of_a_post_only_order_into_the_book_is_rejected() -> None:
    engine = book()
    engine.process(limit(1, BUY, "0.1", "48000", post_only=True))  # order 4
    before = engine.snapshot()
    rejected = only(engine.process(AmendOrder(1, 4, None, u("50000"))), CommandRejected)
    assert rejected.code is RejectCode.POST_ONLY_WOULD_TAKE
    assert engine.snapshot() == before


def test_amend_someone_elses_order_is_not_found() -> None:
    engine = book()
    rejected = only(engine.process(AmendOrder(1, 1, u("0.05"))), CommandRejected)
    assert rejected.code is RejectCode.NOT_FOUND


# ---------------------------------------------------------------- halt


def test_halted_market_rejects_place_and_amend_but_allows_cancel() -> None:
    engine = book()
    assert engine.process(HaltMarket(BTC, "maintenance")) == [MarketHalted(BTC, "maintenance")]
    for command in (limit(1, BUY, "0.1", "45000"), market(1, SELL, "0.1")):
        assert only(engine.process(command), CommandRejected).code is RejectCode.MARKET_HALTED
    rejected = only(engine.process(AmendOrder(2, 1, u("0.05"))), CommandRejected)
    assert rejected.code is RejectCode.MARKET_HALTED
    assert engine.depth(BTC, SELL) == [(u("50000"), u("0.1")), (u("50100"), u("0.2"))]
    assert only(engine.process(CancelOrder(2, 1)), OrderCancelled).reason is CancelReason.USER
    # Other markets trade on.
    assert of_type(engine.process(limit(1, BUY, "1", "2000", ETH)), OrderAccepted)
    rejected = only(engine.process(HaltMarket(BTC, "again")), CommandRejected)
    assert rejected.code is RejectCode.INVALID_INPUT
    assert engine.process(ResumeMarket(BTC)) == [MarketResumed(BTC)]
    assert of_type(engine.process(limit(1, BUY, "0.1", "45000")), OrderAccepted)


def test_halt_can_cancel_every_resting_order() -> None:
    engine = book()
    events = engine.process(HaltMarket(BTC, "incident", cancel_orders=True))
    assert isinstance(events[0], MarketHalted)
    cancelled = of_type(events, OrderCancelled)
    assert [(c.order_id, c.reason) for c in cancelled] == [
        (1, CancelReason.HALT),
        (2, CancelReason.HALT),
        (3, CancelReason.HALT),
    ]
    assert engine.depth(BTC, BUY) == engine.depth(BTC, SELL) == []
    assert all(locked == 0 for _, locked in balances(engine).values())


# ---------------------------------------------------------------- pre-trade risk


def test_open_order_limit_rejects_another_resting_order() -> None:
    engine = create_engine({1: {"USDT": "100000"}}, max_open_orders_per_user=2)
    engine.process(limit(1, BUY, "0.1", "40000"))
    engine.process(limit(1, BUY, "0.1", "40001"))
    rejected = only(engine.process(limit(1, BUY, "0.1", "40002")), CommandRejected)
    assert rejected.code is RejectCode.RISK_REJECTED
    # Orders that cannot rest are still allowed.
    events = engine.process(limit(1, BUY, "0.1", "40002", tif=IOC))
    assert only(events, OrderCancelled).reason is CancelReason.IOC


def test_amend_to_the_same_values_changes_nothing_but_says_so() -> None:
    engine = book()
    before = engine.depth(BTC, SELL)
    events = engine.process(AmendOrder(2, 1, u("0.1"), u("50000")))
    assert kinds(events) == ["OrderAmended"]
    assert only(events, OrderAmended).kept_priority is True
    assert engine.depth(BTC, SELL) == before
