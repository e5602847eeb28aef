"""Snapshot and restore: the worker rebuilds the engine from PostgreSQL rows."""

from dataclasses import replace

import pytest

from engine import (
    AmendOrder,
    BalanceState,
    Engine,
    EngineSnapshot,
    HaltMarket,
    MarketStatus,
    OrderDuplicate,
    RestingOrderState,
    SetFeeTier,
    Side,
    TradeExecuted,
)
from tests.engine.factories import (
    BTC,
    FEE_ACCOUNT,
    btc_usdt,
    create_engine,
    eth_usdt,
    limit,
    of_type,
    u,
)

BUY, SELL = Side.BUY, Side.SELL


def busy_engine() -> Engine:
    engine = create_engine({1: {"USDT": "100000", "BTC": "3"}, 2: {"BTC": "5"}, 3: {"BTC": "5"}})
    engine.process(SetFeeTier(3, 4))
    engine.process(limit(2, SELL, "1", "50000", client_order_id="a"))  # 1
    engine.process(limit(3, SELL, "1", "50000"))  # 2
    engine.process(limit(2, SELL, "1", "50100"))  # 3
    engine.process(AmendOrder(2, 1, u("1.5")))  # to the back of 50000: priority 4
    engine.process(limit(1, BUY, "0.4", "50000"))  # 5: fills 0.4 of order 2
    engine.process(limit(1, BUY, "0.5", "49000", client_order_id="b"))  # 6
    engine.process(HaltMarket("ETH-USDT", "test"))
    return engine


def test_snapshot_lists_open_orders_in_priority_order() -> None:
    snapshot = busy_engine().snapshot()
    assert [
        (o.order_id, o.side, o.price, o.filled_quantity, o.priority) for o in snapshot.orders
    ] == [
        (6, BUY, u("49000"), 0, 6),
        (2, SELL, u("50000"), u("0.4"), 2),
        (1, SELL, u("50000"), 0, 4),
        (3, SELL, u("50100"), 0, 3),
    ]
    assert snapshot.orders[0].reserved == u("24500")
    assert snapshot.client_order_ids == {(1, "b"): 6, (2, "a"): 1}
    assert snapshot.user_fee_tiers == {3: 4}
    assert (snapshot.next_order_id, snapshot.next_trade_id) == (7, 2)
    assert snapshot.book_sequences == {BTC: 7, "ETH-USDT": 0}
    assert [m.status for m in snapshot.markets] == [MarketStatus.TRADING, MarketStatus.HALTED]


def test_restored_engine_behaves_like_the_original() -> None:
    original = busy_engine()
    restored = Engine.restore(original.snapshot())
    assert restored.snapshot() == original.snapshot()
    for command in (
        limit(1, BUY, "2", "50100"),
        limit(1, BUY, "0.1", "49000", client_order_id="b"),
        limit(1, BUY, "1", "2000", "ETH-USDT"),
        AmendOrder(1, 6, u("0.2")),
    ):
        assert restored.process(command) == original.process(command)
    assert restored.snapshot() == original.snapshot()


def test_restore_from_rows_in_any_order() -> None:
    """The worker reads rows by id; the priority column puts the queues back in order."""
    original = busy_engine()
    snapshot = original.snapshot()
    rows = replace(
        snapshot,
        orders=sorted(snapshot.orders, key=lambda o: o.order_id, reverse=True),
        balances=list(reversed(snapshot.balances)),
    )
    restored = Engine.restore(rows)
    events = restored.process(limit(1, BUY, "1.1", "50000"))
    assert [(t.maker_order_id, t.quantity) for t in of_type(events, TradeExecuted)] == [
        (2, u("0.6")),
        (1, u("0.5")),
    ]
    assert events == original.process(limit(1, BUY, "1.1", "50000"))
    assert restored.process(limit(1, BUY, "1", "1", client_order_id="b")) == [
        OrderDuplicate(6, 1, "b")
    ]


def snapshot_with(orders: list[RestingOrderState], balances: list[BalanceState]) -> EngineSnapshot:
    return EngineSnapshot(
        markets=[btc_usdt(), eth_usdt()],
        fee_account_id=FEE_ACCOUNT,
        balances=balances,
        orders=orders,
        next_order_id=10,
    )


def test_restore_refuses_locked_funds_that_no_order_reserves() -> None:
    order = RestingOrderState(1, 1, BTC, SELL, u("50000"), u("1"), u("0.25"), 1)
    good = snapshot_with([order], [BalanceState(1, "BTC", 0, u("0.75"))])
    assert Engine.restore(good).balance(1, "BTC") == (0, u("0.75"))
    with pytest.raises(ValueError, match="locked BTC of user 1"):
        Engine.restore(snapshot_with([order], [BalanceState(1, "BTC", 0, u("1"))]))


@pytest.mark.parametrize(
    ("orders", "message"),
    [
        (
            [
                RestingOrderState(1, 1, BTC, BUY, u("50000"), u("0.1"), 0, 1),
                RestingOrderState(2, 2, BTC, SELL, u("50000"), u("0.1"), 0, 2),
            ],
            "crossed",
        ),
        ([RestingOrderState(1, 2, BTC, SELL, u("50000.001"), u("0.1"), 0, 1)], "grid"),
        ([RestingOrderState(1, 2, BTC, SELL, u("50000"), u("0.1"), u("0.1"), 1)], "grid"),
        ([RestingOrderState(1, 2, "DOGE-USDT", SELL, u("1"), u("1"), 0, 1)], "unknown market"),
        ([RestingOrderState(12, 2, BTC, SELL, u("50000"), u("0.1"), 0, 12)], "next_order_id"),
    ],
)
def test_restore_refuses_inconsistent_state(orders: list[RestingOrderState], message: str) -> None:
    locked: dict[tuple[int, str], int] = {}
    for order in orders:
        asset = "USDT" if order.side is BUY else order.symbol.split("-")[0]
        locked[order.user_id, asset] = locked.get((order.user_id, asset), 0) + order.reserved
    balances = [BalanceState(user, asset, 0, amount) for (user, asset), amount in locked.items()]
    with pytest.raises(ValueError, match=message):
        Engine.restore(snapshot_with(orders, balances))
