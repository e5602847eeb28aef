"""Live market data: the book (snapshot, then contiguous deltas) and trades."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from decimal import Decimal

import strawberry

from app import wire
from app.kit.pubsub import GAP, OVERFLOW, when_redis_answers
from app.markets.service import BookSnapshot, Level
from graph.context import Context
from graph.markets.queries import check_depth, require_market
from graph.markets.types_book import BookUpdateType, OrderBookLevel, OrderBookUpdate
from graph.orders.types import Trade

Info = strawberry.Info[Context, None]


def _snapshot_update(snapshot: BookSnapshot) -> OrderBookUpdate:
    return OrderBookUpdate(
        type=BookUpdateType.SNAPSHOT,
        symbol=snapshot.symbol,
        sequence=snapshot.sequence,
        bids=[OrderBookLevel.from_level(level) for level in snapshot.bids],
        asks=[OrderBookLevel.from_level(level) for level in snapshot.asks],
    )


def _delta(symbol: str, change: wire.LevelChange) -> OrderBookUpdate:
    level = OrderBookLevel.from_level(
        Level(Decimal(change.price), Decimal(change.quantity), change.orders)
    )
    bid = change.side is wire.Side.BUY
    return OrderBookUpdate(
        type=BookUpdateType.DELTA,
        symbol=symbol,
        sequence=change.sequence,
        bids=[level] if bid else [],
        asks=[] if bid else [level],
    )


@strawberry.type
class MarketSubscriptions:
    @strawberry.subscription(
        description="The book: a SNAPSHOT (depth levels a side), then one DELTA per change."
    )
    async def order_book(
        self, info: Info, symbol: str, depth: int = 20
    ) -> AsyncGenerator[OrderBookUpdate, None]:
        check_depth(depth)
        symbol = await require_market(info, symbol)
        services = info.context.services
        channel = services.keys.book_channel(symbol)

        async def read_snapshot() -> BookSnapshot:
            # Redis down (restarting): wait for it rather than fail the subscription.
            return await when_redis_answers(lambda: services.markets.order_book(symbol, depth))

        # Subscribe first, then read the snapshot: no change can fall between the two.
        async with services.broadcast.subscribe(channel) as subscriber:
            snapshot = await read_snapshot()
            last = snapshot.sequence
            yield _snapshot_update(snapshot)
            async for event in subscriber:
                if event.message in (GAP, OVERFLOW):
                    # Reconnected after a lost Redis connection, or fell behind.
                    snapshot = await read_snapshot()
                    last = snapshot.sequence
                    yield _snapshot_update(snapshot)
                    continue
                message = wire.decode_book_message(event.message)
                if not isinstance(message, wire.BookDelta):
                    continue
                changes = [c for c in message.levels if c.sequence > last]
                if changes and changes[0].sequence != last + 1:
                    # A change went missing between snapshot and stream: start again.
                    snapshot = await read_snapshot()
                    last = snapshot.sequence
                    yield _snapshot_update(snapshot)
                    continue
                for change in changes:
                    last = change.sequence
                    yield _delta(symbol, change)

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
