"""Order books: price levels in a ``SortedList``, a FIFO queue per level.

Each level is an intrusive doubly linked list of orders, so appending, removing any order
(cancel by id) and taking the head are O(1); a price level is created or dropped in
O(log n). Keys are signed so that the best level of either side has the smallest key:
``price`` for asks, ``-price`` for bids.
"""

from __future__ import annotations

from sortedcontainers import SortedList

from engine.accounts import Balance
from engine.enums import MarketStatus, OrderType, Side, TimeInForce
from engine.market import MarketSpec
from engine.risk import NO_LIMITS, PriceWatch


class Order:
    """An order while the engine holds it (resting, or matching as the incoming taker).

    ``reserved`` is what the order still holds locked: ``price * remaining // SCALE`` quote
    for a BUY limit, ``remaining`` base for a SELL, 0 for a MARKET BUY.
    """

    level: Level | None
    prev: Order | None
    next: Order | None

    __slots__ = (
        "base",
        "book",
        "client_order_id",
        "filled",
        "id",
        "is_buy",
        "level",
        "next",
        "post_only",
        "prev",
        "price",
        "priority",
        "quantity",
        "quote",
        "remaining",
        "reserved",
        "side",
        "time_in_force",
        "type",
        "user_id",
    )

    def __init__(
        self,
        order_id: int,
        user_id: int,
        book: OrderBook,
        side: Side,
        order_type: OrderType,
        time_in_force: TimeInForce,
        price: int,
        quantity: int,
        post_only: bool,
        client_order_id: str | None,
        priority: int,
        base: Balance,
        quote: Balance,
    ) -> None:
        self.id = order_id
        self.user_id = user_id
        self.book = book
        self.side = side
        self.is_buy = side is Side.BUY
        self.type = order_type
        self.time_in_force = time_in_force
        self.price = price
        self.quantity = quantity
        self.filled = 0
        self.remaining = quantity
        self.reserved = 0
        self.post_only = post_only
        self.client_order_id = client_order_id
        self.priority = priority
        self.base = base
        self.quote = quote
        # level, prev and next are set when the order joins a book (BookSide.append).

    def __repr__(self) -> str:
        return (
            f"Order(id={self.id}, user={self.user_id}, {self.side.value} {self.type.value} "
            f"{self.filled}/{self.quantity} @ {self.price}, reserved={self.reserved})"
        )


class Level:
    """One price on one side: aggregate quantity and a FIFO of orders."""

    __slots__ = ("count", "head", "key", "price", "quantity", "tail")

    def __init__(self, key: int, price: int) -> None:
        self.key = key
        self.price = price
        self.quantity = 0
        self.count = 0
        self.head: Order | None = None
        self.tail: Order | None = None

    def orders(self) -> list[Order]:
        """The queue, first in first out."""
        queue = []
        order = self.head
        while order is not None:
            queue.append(order)
            order = order.next
        return queue


class BookSide:
    """Bids or asks. ``best`` is the level with the smallest key, or ``None``."""

    __slots__ = ("best", "keys", "levels", "side", "sign")

    def __init__(self, side: Side) -> None:
        self.side = side
        self.sign = -1 if side is Side.BUY else 1
        self.levels: dict[int, Level] = {}
        self.keys: SortedList = SortedList()
        self.best: Level | None = None

    def append(self, order: Order) -> Level:
        """Queue ``order`` at the back of its price level, creating the level if needed."""
        key = order.price * self.sign
        level = self.levels.get(key)
        if level is None:
            level = self.levels[key] = Level(key, order.price)
            self.keys.add(key)
            best = self.best
            if best is None or key < best.key:
                self.best = level
        tail = level.tail
        order.prev = tail
        order.next = None
        if tail is None:
            level.head = order
        else:
            tail.next = order
        level.tail = order
        order.level = level
        level.quantity += order.remaining
        level.count += 1
        return level

    def unlink(self, order: Order) -> Level:
        """Take ``order`` out of its level; drop the level when it empties."""
        level = order.level
        assert level is not None
        prev, nxt = order.prev, order.next
        if prev is None:
            level.head = nxt
        else:
            prev.next = nxt
        if nxt is None:
            level.tail = prev
        else:
            nxt.prev = prev
        order.prev = order.next = order.level = None
        level.quantity -= order.remaining
        level.count -= 1
        if not level.count:
            self.drop(level)
        return level

    def drop(self, level: Level) -> None:
        """Forget an empty level."""
        del self.levels[level.key]
        keys = self.keys
        keys.remove(level.key)
        if self.best is level:
            self.best = self.levels[keys[0]] if keys else None

    def in_priority(self) -> list[Level]:
        """Levels from best to worst."""
        levels = self.levels
        return [levels[key] for key in self.keys]


class OrderBook:
    """One market: its spec, trading status, both sides and its book sequence."""

    __slots__ = (
        "asks",
        "base",
        "bids",
        "fee_base",
        "fee_quote",
        "halted_until",
        "last_price",
        "limits",
        "lot_size",
        "min_notional",
        "quote",
        "sequence",
        "spec",
        "status",
        "symbol",
        "tick_size",
        "watch",
    )

    def __init__(self, spec: MarketSpec, fee_base: Balance, fee_quote: Balance) -> None:
        self.spec = spec
        self.symbol = spec.symbol
        self.base = spec.base
        self.quote = spec.quote
        self.tick_size = spec.tick_size
        self.lot_size = spec.lot_size
        self.min_notional = spec.min_notional
        self.status = spec.status
        self.bids = BookSide(Side.BUY)
        self.asks = BookSide(Side.SELL)
        self.sequence = 0
        self.fee_base = fee_base
        self.fee_quote = fee_quote
        self.limits = NO_LIMITS
        self.last_price = 0
        """The last trade's price (0: none yet): the price band's reference."""
        self.watch: PriceWatch | None = None
        """The trade prices of the circuit breaker's window, if the market has a breaker."""
        self.halted_until = 0
        """When a circuit breaker's halt ends (ms); 0 for an admin's halt or none."""

    def side(self, side: Side) -> BookSide:
        return self.bids if side is Side.BUY else self.asks

    def opposite(self, side: Side) -> BookSide:
        return self.asks if side is Side.BUY else self.bids

    @property
    def halted(self) -> bool:
        return self.status is MarketStatus.HALTED
