"""Reservation, release, settlement and fees, to the last 1e-8."""

from engine import (
    BalanceChanged,
    BalanceReason,
    CancelOrder,
    CommandRejected,
    Deposit,
    Engine,
    OrderAccepted,
    RejectCode,
    SetFeeTier,
    Side,
    TradeExecuted,
    Withdraw,
)
from tests.engine.factories import (
    FEE_ACCOUNT,
    balances,
    btc_usdt,
    create_engine,
    ledger_net,
    limit,
    of_type,
    only,
    u,
)

BUY, SELL = Side.BUY, Side.SELL


def test_buy_limit_locks_price_times_quantity_of_quote() -> None:
    engine = create_engine({1: {"USDT": "100000"}})
    events = engine.process(limit(1, BUY, "0.5", "40000.01"))
    assert only(events, OrderAccepted).reserved == u("20000.005")
    lock = only(events, BalanceChanged)
    assert (lock.asset, lock.available_delta, lock.locked_delta, lock.reason, lock.reference) == (
        "USDT",
        -u("20000.005"),
        u("20000.005"),
        BalanceReason.ORDER_LOCK,
        1,
    )
    assert engine.balance(1, "USDT") == (u("79999.995"), u("20000.005"))


def test_sell_limit_locks_quantity_of_base() -> None:
    engine = create_engine({2: {"BTC": "1"}})
    engine.process(limit(2, SELL, "0.3", "60000"))
    assert engine.balance(2, "BTC") == (u("0.7"), u("0.3"))


def test_cancel_releases_the_reservation() -> None:
    engine = create_engine({1: {"USDT": "100000"}})
    engine.process(limit(1, BUY, "0.5", "40000"))
    events = engine.process(CancelOrder(1, 1))
    unlock = only(events, BalanceChanged)
    assert (unlock.available_delta, unlock.locked_delta, unlock.reason) == (
        u("20000"),
        -u("20000"),
        BalanceReason.ORDER_UNLOCK,
    )
    assert engine.balance(1, "USDT") == (u("100000"), 0)


def test_fill_settles_both_sides_with_fees_in_the_received_asset() -> None:
    engine = create_engine({1: {"USDT": "100000"}, 2: {"BTC": "2"}})
    engine.process(limit(2, SELL, "1", "50000"))  # maker, tier 1: 0.10 %
    events = engine.process(limit(1, BUY, "0.5", "50100"))  # taker, tier 1: 0.15 %
    trade = only(events, TradeExecuted)
    assert (trade.price, trade.quantity, trade.quote_quantity) == (u("50000"), u("0.5"), u("25000"))
    assert (trade.buyer_fee, trade.seller_fee) == (u("0.00075"), u("25"))
    # The buyer locked 25050 at its limit, paid 25000: 50 of price improvement came back.
    assert balances(engine) == {
        (1, "USDT"): (u("75000"), 0),
        (1, "BTC"): (u("0.49925"), 0),
        (2, "BTC"): (u("1"), u("0.5")),
        (2, "USDT"): (u("24975"), 0),
        (FEE_ACCOUNT, "BTC"): (u("0.00075"), 0),
        (FEE_ACCOUNT, "USDT"): (u("25"), 0),
    }
    assert [
        (e.user_id, e.asset, e.available_delta, e.locked_delta, e.reason, e.reference)
        for e in of_type(events, BalanceChanged)
    ] == [
        (1, "USDT", -u("25050"), u("25050"), BalanceReason.ORDER_LOCK, 2),
        (1, "USDT", u("50"), -u("25050"), BalanceReason.TRADE, 1),
        (1, "BTC", u("0.5"), 0, BalanceReason.TRADE, 1),
        (1, "BTC", -u("0.00075"), 0, BalanceReason.FEE, 1),
        (2, "BTC", 0, -u("0.5"), BalanceReason.TRADE, 1),
        (2, "USDT", u("25000"), 0, BalanceReason.TRADE, 1),
        (2, "USDT", -u("25"), 0, BalanceReason.FEE, 1),
        (FEE_ACCOUNT, "BTC", u("0.00075"), 0, BalanceReason.FEE, 1),
        (FEE_ACCOUNT, "USDT", u("25"), 0, BalanceReason.FEE, 1),
    ]


def test_balance_events_report_the_balances_after_each_change() -> None:
    engine = create_engine({1: {"USDT": "100000"}, 2: {"BTC": "2"}})
    engine.process(limit(2, SELL, "1", "50000"))
    events = engine.process(limit(1, BUY, "1.5", "50000"))
    last: dict[tuple[int, str], tuple[int, int]] = {}
    for event in of_type(events, BalanceChanged):
        last[event.user_id, event.asset] = (event.available, event.locked)
    for (user_id, asset), after in last.items():
        assert engine.balance(user_id, asset) == after


def test_fees_round_up_to_the_unit() -> None:
    engine = Engine([btc_usdt(min_notional=0)], FEE_ACCOUNT)
    engine.process(Deposit(1, "USDT", u("1")))
    engine.process(Deposit(2, "BTC", u("1")))
    engine.process(limit(2, SELL, "0.00001", "12345.67"))
    events = engine.process(limit(1, BUY, "0.00001", "12345.67"))
    trade = only(events, TradeExecuted)
    assert trade.quote_quantity == u("0.1234567")
    # Taker 0.15 % of 0.00001 BTC = 0.000000015 -> 0.00000002; maker 0.10 % of
    # 0.1234567 USDT = 0.0001234567 -> 0.00012346.
    assert (trade.buyer_fee, trade.seller_fee) == (u("0.00000002"), u("0.00012346"))
    assert engine.balance(1, "BTC") == (u("0.00000998"), 0)
    assert engine.balance(2, "USDT") == (u("0.12333324"), 0)


def test_fee_tiers_set_the_rates() -> None:
    engine = create_engine({1: {"USDT": "100000"}, 2: {"BTC": "3"}})
    engine.process(SetFeeTier(1, 5))  # taker 0.08 %
    engine.process(SetFeeTier(2, 3))  # maker 0.08 %
    engine.process(limit(2, SELL, "2", "30000"))
    trade = only(engine.process(limit(1, BUY, "2", "30000")), TradeExecuted)
    assert (trade.buyer_fee, trade.seller_fee) == (u("0.0016"), u("48"))
    engine.process(SetFeeTier(2, 1))  # back to taker 0.15 %
    engine.process(limit(1, BUY, "0.1", "30000"))  # maker now: tier 5, 0.04 %
    trade = only(engine.process(limit(2, SELL, "0.1", "29000")), TradeExecuted)
    assert (trade.buyer_fee, trade.seller_fee) == (u("0.00004"), u("4.5"))


def test_partial_fill_then_cancel_releases_only_the_rest() -> None:
    engine = create_engine({1: {"USDT": "100000"}, 2: {"BTC": "1"}})
    engine.process(limit(1, BUY, "0.1", "40000"))
    engine.process(limit(2, SELL, "0.04", "39000"))
    assert engine.balance(1, "USDT") == (u("96000"), u("2400"))
    assert engine.balance(1, "BTC") == (u("0.03996"), 0)
    assert engine.balance(2, "USDT") == (u("1597.6"), 0)  # 1600 - 0.15 %
    engine.process(CancelOrder(1, 1))
    assert engine.balance(1, "USDT") == (u("98400"), 0)


def test_deposit_and_withdraw() -> None:
    engine = create_engine()
    deposited = only(engine.process(Deposit(7, "ETH", u("1.5"))), BalanceChanged)
    assert (deposited.available_delta, deposited.reason, deposited.reference) == (
        u("1.5"),
        BalanceReason.DEPOSIT,
        None,
    )
    withdrawn = only(engine.process(Withdraw(7, "ETH", u("0.5"))), BalanceChanged)
    assert (withdrawn.available_delta, withdrawn.available, withdrawn.reason) == (
        -u("0.5"),
        u("1"),
        BalanceReason.WITHDRAWAL,
    )
    rejected = only(engine.process(Withdraw(7, "ETH", u("1.00000001"))), CommandRejected)
    assert rejected.code is RejectCode.INSUFFICIENT_BALANCE
    assert engine.balance(7, "ETH") == (u("1"), 0)


def test_locked_funds_cannot_be_withdrawn_or_spent_twice() -> None:
    engine = create_engine({1: {"USDT": "1000"}})
    engine.process(limit(1, BUY, "0.01", "60000"))  # locks 600
    assert only(engine.process(Withdraw(1, "USDT", u("401"))), CommandRejected).code is (
        RejectCode.INSUFFICIENT_BALANCE
    )
    rejected = only(engine.process(limit(1, BUY, "0.01", "40100")), CommandRejected)
    assert rejected.code is RejectCode.INSUFFICIENT_BALANCE
    assert engine.balance(1, "USDT") == (u("400"), u("600"))


def test_ledger_deltas_add_up_to_the_balance_changes() -> None:
    engine = create_engine({1: {"USDT": "100000"}, 2: {"BTC": "2"}, 3: {"BTC": "2"}})
    engine.process(limit(2, SELL, "0.7", "50000"))
    engine.process(limit(3, SELL, "0.7", "50010.5"))
    before = balances(engine)
    events = engine.process(limit(1, BUY, "1.2", "50020"))
    after = balances(engine)
    for key, (available, locked) in ledger_net(events).items():
        old = before.get(key, (0, 0))
        assert after.get(key, (0, 0)) == (old[0] + available, old[1] + locked)
