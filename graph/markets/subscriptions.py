"""Live market data: the book (snapshot, then contiguous deltas) and trades."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from app import wire
from app.kit.money import plain
from app.kit.pubsub import GAP, OVERFLOW
from app.markets.service import Level
from graph.context import Context
from graph.markets.queries import check_depth, require_market
from graph.markets.types_book import BestBidAsk, BookTop, OrderBookUpdate
from graph.orders.types import Trade
from graph.shared import shared

Info = strawberry.Info[Context, None]


def _top(levels: tuple[Level, ...], before: BookTop | None) -> BookTop | None:
    """A depth-1 view's side after a frame: its level if one is there now."""
    for level in levels:
        if level.quantity:
            return BookTop(price=plain(level.price), quantity=plain(level.quantity))
    return None if levels else before


@strawberry.type
class MarketSubscriptions:
    @strawberry.subscription(
        description=(
            "A view of the book's best `depth` levels a side: a SNAPSHOT, then one DELTA per "
            "book change that touches the view (see OrderBookUpdate for the sync procedure)."
        )
    )
    async def order_book(
        self, info: Info, symbol: str, depth: int = 20
    ) -> AsyncGenerator[OrderBookUpdate, None]:
        check_depth(depth)
        symbol = await require_market(info, symbol)
        async with info.context.services.books.subscribe(symbol, depth) as mailbox:
            while True:
                yield shared(OrderBookUpdate.from_frame(await mailbox.get()))

    @strawberry.subscription(
        description="The best bid and ask, first as they stand, then each time either changes."
    )
    async def best_bid_ask(self, info: Info, symbol: str) -> AsyncGenerator[BestBidAsk, None]:
        symbol = await require_market(info, symbol)
        bid: BookTop | None = None
        ask: BookTop | None = None
        async with info.context.services.books.subscribe(symbol, 1) as mailbox:
            while True:
                frame = await mailbox.get()
                if frame.full:
                    bid, ask = _top(frame.bids, None), _top(frame.asks, None)
                else:
                    bid, ask = _top(frame.bids, bid), _top(frame.asks, ask)
                yield BestBidAsk(symbol=symbol, sequence=frame.sequence, bid=bid, ask=ask)

    @strawberry.subscription(description="Every trade on a market as it happens.")
    async def trades(self, info: Info, symbol: str) -> AsyncGenerator[Trade, None]:
        symbol = await require_market(info, symbol)
        services = info.context.services
        async with services.broadcast.subscribe(services.keys.trades_channel(symbol)) as sub:
            async for event in sub:
                if event.message in (GAP, OVERFLOW):
                    continue
                for trade in wire.decode_trades_event(event.message).trades:
                    yield Trade.from_wire(trade)
