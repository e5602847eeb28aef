from __future__ import annotations

from decimal import Decimal
from enum import Enum

import strawberry

from app.kit.money import plain
from app.markets.depth import Frame, checksum
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
    checksum: int = strawberry.field(
        description="CRC32 of these levels, computed as on OrderBookUpdate.checksum."
    )

    @classmethod
    def from_snapshot(cls, snapshot: BookSnapshot) -> OrderBook:
        return cls(
            symbol=snapshot.symbol,
            sequence=snapshot.sequence,
            bids=[OrderBookLevel.from_level(level) for level in snapshot.bids],
            asks=[OrderBookLevel.from_level(level) for level in snapshot.asks],
            checksum=checksum(snapshot.bids, snapshot.asks),
        )


@strawberry.enum
class BookUpdateType(Enum):
    SNAPSHOT = strawberry.enum_value("SNAPSHOT", description="Your view's levels: start here.")
    DELTA = strawberry.enum_value(
        "DELTA", description="The levels of your view that changed; quantity 0: remove it."
    )
    RESYNC = strawberry.enum_value(
        "RESYNC",
        description=(
            "The whole view: the server re-read the book (it lost a message), or you fell "
            "behind and get the view as it stands instead of the updates you missed. "
            "Replace your view."
        ),
    )


@strawberry.type(
    description=(
        "A book subscription message for a view of the best `depth` levels a side. The first "
        "is a SNAPSHOT. Each DELTA holds every level of the view that changed with one book "
        "change, including the levels that enter the view when better ones leave it; apply "
        "it only if its prevSequence is the sequence you hold. A RESYNC replaces the view "
        "(the server lost a message or Redis reconnected, or you fell behind and get the "
        "view as it stands). After applying, the CRC32 of your view must equal `checksum`; "
        "if it does not, or a prevSequence does not match, resubscribe."
    )
)
class OrderBookUpdate:
    type: BookUpdateType
    symbol: str
    depth: int = strawberry.field(description="The levels a side of this view.")
    sequence: int = strawberry.field(
        description="The book's sequence after this update (of the last change in your view)."
    )
    prev_sequence: int | None = strawberry.field(
        description="The sequence this DELTA applies to; null on SNAPSHOT and RESYNC."
    )
    bids: list[OrderBookLevel]
    asks: list[OrderBookLevel]
    checksum: int = strawberry.field(
        description=(
            "CRC32 (as a signed 32-bit integer) of the view after this update: the text "
            "`price:quantity` of the best bid, then the best ask, then the second bid, the "
            "second ask, and so on (a side that runs out is skipped), joined by ':', each "
            "number written as sent; as OKX's and Kraken's books do."
        )
    )

    @classmethod
    def from_frame(cls, frame: Frame) -> OrderBookUpdate:
        """The update of a frame, made once for every subscriber it goes to."""
        made: OrderBookUpdate | None = frame.memo.get("update")
        if made is None:
            made = frame.memo["update"] = cls(
                type=BookUpdateType[frame.kind.name],
                symbol=frame.symbol,
                depth=frame.depth,
                sequence=frame.sequence,
                prev_sequence=frame.prev_sequence,
                bids=[OrderBookLevel.from_level(level) for level in frame.bids],
                asks=[OrderBookLevel.from_level(level) for level in frame.asks],
                checksum=frame.checksum,
            )
        return made


@strawberry.type(description="A side's best price and the quantity there.")
class BookTop:
    price: Decimal
    quantity: Decimal


@strawberry.type(description="The best bid and ask; null for a side with no order.")
class BestBidAsk:
    symbol: str
    sequence: int = strawberry.field(description="The book's sequence of this top of book.")
    bid: BookTop | None
    ask: BookTop | None
