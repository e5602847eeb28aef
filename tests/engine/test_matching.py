"""Price-time priority, partial fills, trades at the maker's price, the book never crossed."""

from engine import (
    BookLevelChanged,
    Engine,
    Event,
    OrderStatus,
    OrderUpdated,
    Side,
    TradeExecuted,
)
from tests.engine.factories import BTC, create_engine, limit, of_type, u

BUY, SELL = Side.BUY, Side.SELL


def sellers() -> Engine:
    return create_engine(
        {
            1: {"USDT": "1000000"},
            2: {"BTC": "10"},
            3: {"BTC": "10"},
            4: {"BTC": "10"},
        }
    )


def trades(events: list[Event]) -> list[tuple[int, int, int, int]]:
    """(price, quantity, maker order, taker order) of every trade."""
    return [
        (t.price, t.quantity, t.maker_order_id, t.taker_order_id)
        for t in of_type(events, TradeExecuted)
    ]


def test_best_price_fills_first_at_the_makers_prices() -> None:
    engine = sellers()
    engine.process(limit(2, SELL, "1", "50100"))  # order 1
    engine.process(limit(3, SELL, "1", "50000"))  # order 2
    engine.process(limit(4, SELL, "1", "50200"))  # order 3
    events = engine.process(limit(1, BUY, "2.5", "50200"))  # order 4
    assert trades(events) == [
        (u("50000"), u("1"), 2, 4),
        (u("50100"), u("1"), 1, 4),
        (u("50200"), u("0.5"), 3, 4),
    ]
    assert engine.depth(BTC, SELL) == [(u("50200"), u("0.5"))]
    assert engine.depth(BTC, BUY) == []


def test_earlier_order_at_a_price_fills_first() -> None:
    engine = sellers()
    engine.process(limit(2, SELL, "1", "50000"))  # order 1
    engine.process(limit(3, SELL, "1", "50000"))  # order 2
    engine.process(limit(4, SELL, "1", "50000"))  # order 3
    events = engine.process(limit(1, BUY, "1.5", "50000"))
    assert trades(events) == [(u("50000"), u("1"), 1, 4), (u("50000"), u("0.5"), 2, 4)]
    assert [(e.order_id, e.filled_quantity, e.status) for e in of_type(events, OrderUpdated)] == [
        (1, u("1"), OrderStatus.FILLED),
        (2, u("0.5"), OrderStatus.PARTIAL),
        (4, u("1.5"), OrderStatus.FILLED),
    ]
    # The partly filled order keeps its place at the front.
    events = engine.process(limit(1, BUY, "0.6", "50000"))
    assert trades(events) == [(u("50000"), u("0.5"), 2, 5), (u("50000"), u("0.1"), 3, 5)]


def test_incoming_sell_fills_the_highest_bid_at_the_bid_price() -> None:
    engine = sellers()
    engine.process(limit(1, BUY, "1", "49000"))  # order 1
    engine.process(limit(1, BUY, "1", "49500"))  # order 2
    events = engine.process(limit(2, SELL, "1.5", "48000"))
    assert trades(events) == [(u("49500"), u("1"), 2, 3), (u("49000"), u("0.5"), 1, 3)]
    trade = of_type(events, TradeExecuted)[0]
    assert (trade.taker_side, trade.buyer_order_id, trade.seller_order_id) == (SELL, 2, 3)
    assert (trade.buyer_user_id, trade.seller_user_id) == (1, 2)
    assert trade.quote_quantity == u("49500")


def test_unfilled_remainder_rests_and_the_book_is_not_crossed() -> None:
    engine = sellers()
    engine.process(limit(2, SELL, "1", "50000"))
    engine.process(limit(1, BUY, "3", "50100"))
    assert engine.depth(BTC, BUY) == [(u("50100"), u("2"))]
    assert engine.depth(BTC, SELL) == []
    engine.process(limit(3, SELL, "1", "50100.01"))
    (bid, _), (ask, _) = engine.depth(BTC, BUY)[0], engine.depth(BTC, SELL)[0]
    assert bid < ask


def test_book_level_changes_carry_the_new_level_and_a_contiguous_sequence() -> None:
    engine = sellers()
    first = engine.process(limit(2, SELL, "1", "50000"))
    second = engine.process(limit(3, SELL, "2", "50000"))
    third = engine.process(limit(1, BUY, "1.5", "50000.5"))
    changes = [e for events in (first, second, third) for e in of_type(events, BookLevelChanged)]
    assert [(c.side, c.price, c.quantity, c.order_count, c.sequence) for c in changes] == [
        (SELL, u("50000"), u("1"), 1, 1),
        (SELL, u("50000"), u("3"), 2, 2),
        (SELL, u("50000"), u("1.5"), 1, 3),
    ]
    events = engine.process(limit(1, BUY, "1.5", "50000"))
    assert [(c.quantity, c.order_count, c.sequence) for c in of_type(events, BookLevelChanged)] == [
        (0, 0, 4)
    ]
    assert engine.book_sequence(BTC) == 4
