"""Pre-trade risk checks and the circuit breaker, in the engine."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import (
    AmendOrder,
    CancelOrder,
    CommandRejected,
    Deposit,
    Engine,
    Event,
    HaltMarket,
    MarketHalted,
    MarketLimits,
    MarketResumed,
    MarketStatus,
    OrderAccepted,
    OrderCancelled,
    PlaceOrder,
    RejectCode,
    ResumeMarket,
    RiskEventRaised,
    SetMarketLimits,
    SetPositionLimit,
    SetTradingSuspension,
    Side,
    Tick,
    TradeExecuted,
)
from engine.enums import CancelReason, OrderType
from engine.risk import PriceWatch, percent
from tests.engine.factories import BTC, FEE_ACCOUNT, btc_usdt, create_engine, eth_usdt, limit, u

BAND = MarketLimits(price_band_ppm=100_000)  # 10 %
BREAKER = MarketLimits(
    price_band_ppm=100_000,
    breaker_move_ppm=100_000,
    breaker_window_ms=60_000,
    breaker_cooldown_ms=300_000,
)
FUNDS = {user: {"BTC": "100", "USDT": "10000000"} for user in (1, 2, 3)}


def engine_with(limits: MarketLimits, **kwargs: object) -> Engine:
    engine = create_engine(FUNDS, **kwargs)
    engine.process(SetMarketLimits(BTC, limits))
    return engine


def trade_at(engine: Engine, price: str, quantity: str = "0.1") -> list[Event]:
    """User 1 rests a sell at ``price``; user 2 takes it."""
    engine.process(limit(1, Side.SELL, quantity, price))
    return list(engine.process(limit(2, Side.BUY, quantity, price)))


def accepted(events: Sequence[object]) -> int:
    first = events[0]
    assert isinstance(first, OrderAccepted), events
    return first.order_id


def rejection(events: Sequence[object]) -> CommandRejected:
    assert len(events) == 1 and isinstance(events[0], CommandRejected), events
    return events[0]


def test_a_limit_order_outside_the_band_around_the_last_trade_is_refused_with_the_band() -> None:
    engine = engine_with(BAND)
    trade_at(engine, "30000")
    refused = rejection(engine.process(limit(3, Side.BUY, "0.1", "33000.01")))
    assert refused.code is RejectCode.RISK_REJECTED
    assert refused.rule == "price_band" and refused.field == "price"
    assert refused.message == (
        "price 33000.01 is outside the price band: BTC-USDT accepts 27000 to 33000 "
        "(10 % around the last trade 30000)"
    )
    assert rejection(engine.process(limit(3, Side.SELL, "0.1", "26999.99"))).rule == "price_band"
    # The band's edges themselves are accepted.
    assert not isinstance(engine.process(limit(3, Side.BUY, "0.1", "33000"))[0], CommandRejected)
    assert not isinstance(engine.process(limit(3, Side.SELL, "0.1", "27000"))[0], CommandRejected)


def test_before_any_trade_the_band_is_around_a_mid_whose_spread_is_inside_the_band() -> None:
    engine = engine_with(BAND)
    assert not isinstance(engine.process(limit(1, Side.SELL, "0.1", "50000"))[0], CommandRejected)
    # Only asks: no mid yet, any bid is accepted.
    assert not isinstance(engine.process(limit(2, Side.BUY, "0.1", "10000"))[0], CommandRejected)
    # A spread wider than the band has no meaningful mid: still no band.
    assert not isinstance(engine.process(limit(2, Side.BUY, "0.1", "20000"))[0], CommandRejected)
    engine.process(limit(1, Side.SELL, "0.1", "31000"))
    engine.process(limit(2, Side.BUY, "0.1", "29000"))
    refused = rejection(engine.process(limit(3, Side.BUY, "0.1", "33000.01")))
    assert "accepts 27000 to 33000 (10 % around the mid price 30000)" in refused.message


def test_a_market_order_stops_at_the_band_instead_of_sweeping_the_book() -> None:
    engine = engine_with(BAND)
    for price in ("30000", "32000", "33000", "40000"):
        engine.process(limit(1, Side.SELL, "0.1", price))
    trade_at(engine, "30000")  # no bid before it: no mid, no band yet
    events = engine.process(PlaceOrder(3, BTC, Side.BUY, OrderType.MARKET, u("1")))
    prices = [e.price for e in events if isinstance(e, TradeExecuted)]
    assert prices == [u("30000"), u("32000"), u("33000")]
    cancelled = [e for e in events if isinstance(e, OrderCancelled)]
    assert cancelled[-1].reason is CancelReason.MARKET
    assert engine.depth(BTC, Side.SELL) == [(u("40000"), u("0.1"))]


def test_an_amend_to_a_price_outside_the_band_is_refused() -> None:
    engine = engine_with(BAND)
    trade_at(engine, "30000")
    order_id = accepted(engine.process(limit(3, Side.BUY, "0.1", "29000")))
    refused = rejection(engine.process(AmendOrder(3, order_id, price=u("20000"))))
    assert refused.rule == "price_band"
    # Changing only the quantity of an order priced before the market moved is fine.
    engine.process(SetMarketLimits(BTC, MarketLimits(price_band_ppm=10_000)))
    assert not isinstance(
        engine.process(AmendOrder(3, order_id, quantity=u("0.05")))[0], CommandRejected
    )


def test_order_size_limits() -> None:
    engine = engine_with(MarketLimits(max_order_quantity=u("5"), max_order_notional=u("100000")))
    refused = rejection(engine.process(limit(1, Side.SELL, "5.00001", "100")))
    assert refused.rule == "order_size" and refused.field == "quantity"
    assert refused.message == "quantity 5.00001 is above the largest order on BTC-USDT, 5 BTC"
    refused = rejection(engine.process(limit(1, Side.SELL, "4", "30000")))
    assert refused.message == (
        "order value 120000 USDT is above the largest order on BTC-USDT, 100000 USDT"
    )


def test_the_position_limit_counts_holdings_and_open_buys() -> None:
    engine = create_engine(FUNDS, position_limits={"BTC": u("101")})
    # User 3 holds 100 BTC: a 0.9 BTC bid fits, the next 0.2 does not.
    assert not isinstance(engine.process(limit(3, Side.BUY, "0.9", "100"))[0], CommandRejected)
    refused = rejection(engine.process(limit(3, Side.BUY, "0.2", "100")))
    assert refused.rule == "position_limit"
    assert refused.message == (
        "position limit: buying 0.2 BTC would take your BTC position (holdings plus open "
        "buys) to 101.1, above the limit of 101 BTC"
    )
    assert engine.position(3, "BTC") == u("100.9")
    # Selling BTC is never limited.
    assert not isinstance(engine.process(limit(3, Side.SELL, "50", "200"))[0], CommandRejected)
    # An override for one user wins over the default.
    engine.process(SetPositionLimit(3, "BTC", u("200")))
    assert not isinstance(engine.process(limit(3, Side.BUY, "99.1", "100"))[0], CommandRejected)
    assert engine.position(3, "BTC") == u("200")
    assert rejection(engine.process(limit(3, Side.BUY, "0.1", "100"))).rule == "position_limit"
    engine.process(SetPositionLimit(3, "BTC", None))
    assert engine.position_limit(3, "BTC") == u("101")


def test_raising_an_open_buy_counts_against_the_position_limit() -> None:
    engine = create_engine(FUNDS, position_limits={"BTC": u("101")})
    order_id = accepted(engine.process(limit(3, Side.BUY, "1", "100")))
    assert rejection(engine.process(AmendOrder(3, order_id, quantity=u("2")))).rule == (
        "position_limit"
    )
    assert not isinstance(
        engine.process(AmendOrder(3, order_id, quantity=u("0.5")))[0], CommandRejected
    )
    assert engine.position(3, "BTC") == u("100.5")


def test_a_suspended_account_may_cancel_but_not_place_or_amend() -> None:
    engine = create_engine(FUNDS)
    order_id = accepted(engine.process(limit(3, Side.BUY, "1", "100")))
    engine.process(SetTradingSuspension(3, True, "investigation"))
    refused = rejection(engine.process(limit(3, Side.BUY, "1", "100")))
    assert (refused.code, refused.rule) == (RejectCode.RISK_REJECTED, "trading_suspended")
    assert refused.message == "trading is suspended for this account; cancels still work"
    assert rejection(engine.process(AmendOrder(3, order_id, price=u("101")))).rule == (
        "trading_suspended"
    )
    assert isinstance(engine.process(CancelOrder(3, order_id))[0], OrderCancelled)
    engine.process(SetTradingSuspension(3, False))
    assert not isinstance(engine.process(limit(3, Side.BUY, "1", "100"))[0], CommandRejected)


def test_the_circuit_breaker_halts_the_market_cancels_the_rest_and_resumes_after_the_cooldown() -> (
    None
):
    engine = engine_with(BREAKER)
    engine.process(Tick(1_000_000))
    trade_at(engine, "30000")
    engine.process(Tick(1_010_000))
    trade_at(engine, "32900")  # +9.67 %: within the band and below the breaker
    assert engine.market(BTC).status is MarketStatus.TRADING
    engine.process(Tick(1_020_000))
    engine.process(limit(1, Side.SELL, "0.1", "33100"))
    engine.process(limit(1, Side.SELL, "0.1", "33200"))
    events = engine.process(limit(2, Side.BUY, "0.3", "33200"))  # 30000 -> 33100 is 10.33 %
    trades = [e for e in events if isinstance(e, TradeExecuted)]
    assert [t.price for t in trades] == [u("33100")]  # stopped at the trade that tripped it
    halted = next(e for e in events if isinstance(e, MarketHalted))
    assert halted.until_ms == 1_020_000 + 300_000
    assert halted.reason == (
        "circuit breaker: trades moved 10.3333 % within 60 s (30000 to 33100), more than 10 %"
    )
    alert = next(e for e in events if isinstance(e, RiskEventRaised))
    assert (alert.user_id, alert.rule, alert.symbol) == (None, "circuit_breaker", BTC)
    assert alert.severity.value == "CRITICAL" and alert.event_type.value == "TRADE"
    assert dict(alert.details)["move_pct"] == "10.3333"
    taker_cancel = [e for e in events if isinstance(e, OrderCancelled)]
    assert taker_cancel and taker_cancel[-1].reason is CancelReason.HALT
    # Halted: new orders and amends refused, cancels work, the resting ask stays.
    assert engine.market(BTC).status is MarketStatus.HALTED
    assert rejection(engine.process(limit(3, Side.BUY, "0.1", "33000"))).code is (
        RejectCode.MARKET_HALTED
    )
    assert engine.depth(BTC, Side.SELL) == [(u("33200"), u("0.1"))]
    assert engine.next_resume_ms == 1_320_000
    assert engine.process(Tick(1_319_999)) == []
    assert engine.process(Tick(1_320_000)) == [MarketResumed(BTC, True)]
    assert engine.market(BTC).status is MarketStatus.TRADING
    # The window starts afresh after the halt.
    assert not any(isinstance(e, MarketHalted) for e in trade_at(engine, "33150"))


def test_an_admin_can_resume_a_breaker_halt_early_or_make_it_indefinite() -> None:
    engine = engine_with(BREAKER)
    engine.process(Tick(5_000))
    trade_at(engine, "30000")
    trade_at(engine, "32900")
    trade_at(engine, "33100")
    assert engine.halted_until(BTC) == 305_000
    assert engine.process(ResumeMarket(BTC)) == [MarketResumed(BTC)]
    trade_at(engine, "33100")
    trade_at(engine, "36400")
    trade_at(engine, "36500")
    assert engine.halted_until(BTC) is not None
    # An admin's halt over a breaker's: no automatic resume any more.
    assert engine.process(HaltMarket(BTC, "investigating")) == [MarketHalted(BTC, "investigating")]
    assert engine.halted_until(BTC) is None and engine.next_resume_ms is None
    assert engine.process(Tick(10_000_000)) == []
    assert engine.market(BTC).status is MarketStatus.HALTED


def test_old_trades_leave_the_breaker_window() -> None:
    engine = engine_with(BREAKER)
    engine.process(Tick(0))
    trade_at(engine, "30000")
    engine.process(Tick(61_000))
    trade_at(engine, "32900")
    engine.process(Tick(122_000))
    trade_at(engine, "35000")  # 6.4 % over the 60 s window's 32900
    assert engine.market(BTC).status is MarketStatus.TRADING


def test_risk_state_survives_a_snapshot_and_restore() -> None:
    engine = engine_with(BREAKER, position_limits={"BTC": u("500")})
    engine.process(SetPositionLimit(2, "BTC", u("300")))
    engine.process(SetTradingSuspension(3, True, "kyc review"))
    engine.process(Tick(1_000))
    trade_at(engine, "30000")
    trade_at(engine, "32900")
    trade_at(engine, "33100")
    snapshot = engine.snapshot()
    restored = Engine.restore(snapshot)
    assert restored.snapshot() == snapshot
    assert restored.halted_until(BTC) == 301_000
    assert restored.last_price(BTC) == u("33100")
    assert restored.trading_suspended(3) and restored.position_limit(2, "BTC") == u("300")
    assert restored.process(Tick(301_000)) == [MarketResumed(BTC, True)]
    assert rejection(restored.process(limit(1, Side.BUY, "0.1", "40000"))).rule == "price_band"


def test_bad_risk_commands_are_refused_and_change_nothing() -> None:
    engine = create_engine(FUNDS)
    before = engine.snapshot()
    assert rejection(engine.process(SetPositionLimit(1, "DOGE", 5))).code is (
        RejectCode.INVALID_INPUT
    )
    assert rejection(engine.process(SetPositionLimit(1, "BTC", -1))).field == "maxPosition"
    assert rejection(engine.process(Tick(-5))).code is RejectCode.INVALID_INPUT
    assert rejection(engine.process(SetMarketLimits("DOGE-USDT", BAND))).code is (
        RejectCode.UNKNOWN_SYMBOL
    )
    assert engine.snapshot() == before


def test_percent_text() -> None:
    assert [percent(p) for p in (100_000, 12_500, 103_333, 1)] == [
        "10",
        "1.25",
        "10.3333",
        "0.0001",
    ]


@given(
    st.lists(
        st.tuples(
            st.sampled_from([1, 2, 3]),
            st.sampled_from(list(Side)),
            st.integers(1, 40),  # quantity in 0.01 BTC
            st.integers(290, 310),  # price in 100 USDT
            st.integers(0, 4),  # what: place / cancel / amend
        ),
        max_size=60,
    )
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_open_buys_are_tracked_exactly_and_no_position_ever_exceeds_its_limit(
    flow: list[tuple[int, Side, int, int, int]],
) -> None:
    engine = Engine(
        [btc_usdt(), eth_usdt()],
        FEE_ACCOUNT,
        market_limits={BTC: BREAKER},
        position_limits={"BTC": u("101")},
    )
    engine.process(Deposit(1, "BTC", u("100")))
    for user in (2, 3):
        engine.process(Deposit(user, "USDT", u("5000000")))
    now = 0
    for user, side, quantity, price, what in flow:
        now += 7_000
        engine.process(Tick(now))
        mine = [o for o in engine.snapshot().orders if o.user_id == user]
        if what == 3 and mine:
            engine.process(CancelOrder(user, mine[0].order_id))
        elif what == 4 and mine:
            engine.process(AmendOrder(user, mine[-1].order_id, quantity=quantity * u("0.01")))
        else:
            engine.process(limit(user, side, str(quantity / 100), str(price * 100)))
        if engine.market(BTC).status is MarketStatus.HALTED:
            engine.process(ResumeMarket(BTC))
        orders = engine.snapshot().orders
        for account in (1, 2, 3):
            open_buys = sum(
                o.quantity - o.filled_quantity
                for o in orders
                if o.user_id == account and o.side is Side.BUY
            )
            available, locked = engine.balance(account, "BTC")
            assert engine.position(account, "BTC") == available + locked + open_buys
    restored = Engine.restore(engine.snapshot())
    for account in (1, 2, 3):
        assert restored.position(account, "BTC") == engine.position(account, "BTC")


def test_price_watch_keeps_the_window_extremes() -> None:
    watch = PriceWatch(10)
    assert watch.record(0, 100) == (100, 100)
    assert watch.record(5, 120) == (100, 120)
    assert watch.record(11, 90) == (90, 120)  # 100 left the window
    assert watch.record(16, 95) == (90, 95)  # 120 left too
