from __future__ import annotations

from decimal import Decimal
from enum import Enum

import strawberry

from app.kit.money import plain
from app.markets.service import BookSnapshot, Level


@strawberry.type(description="One price level: the total quantity resting there.")
class OrderBookLevel:
    price: Decimal
    quantity: Decimal = strawberry.field(description="0 in a delta: the level is gone.")
    orders: int = strawberry.field(description="How many orders rest at this price.")

    @classmethod
    def from_level(cls, level: Level) -> OrderBookLevel:
        return cls(price=plain(level.price), quantity=plain(level.quantity), orders=level.orders)


@strawberry.type(description="A market's book, aggregated by price, best prices first.")
class OrderBook:
    symbol: str
    sequence: int = strawberry.field(
        description="The sequence of the last change included; deltas continue from it."
    )
    bids: list[OrderBookLevel]
    asks: list[OrderBookLevel]

    @classmethod
    def from_snapshot(cls, snapshot: BookSnapshot) -> OrderBook:
        return cls(
            symbol=snapshot.symbol,
            sequence=snapshot.sequence,
            bids=[OrderBookLevel.from_level(level) for level in snapshot.bids],
            asks=[OrderBookLevel.from_level(level) for level in snapshot.asks],
        )


@strawberry.enum
class BookUpdateType(Enum):
    SNAPSHOT = "SNAPSHOT"
    DELTA = "DELTA"


@strawberry.type(
    description=(
        "A book subscription message. The first is a SNAPSHOT; each DELTA after it changes one "
        "level and carries the next sequence (snapshot.sequence + 1, + 2, …). A client that "
        "sees a jump has missed a change and should resubscribe. After a Redis reconnect or "
        "when the client falls behind, the server sends a fresh SNAPSHOT itself."
    )
)
class OrderBookUpdate:
    type: BookUpdateType
    symbol: str
    sequence: int
    bids: list[OrderBookLevel]
    asks: list[OrderBookLevel]
