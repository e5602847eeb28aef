"""Live market data: the book (snapshot, then contiguous deltas) and trades."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from datetime import datetime
from decimal import Decimal

import strawberry

from app.kit.pubsub import GAP, OVERFLOW, when_redis_answers
from app.markets.service import BookSnapshot, Level
from graph.context import Context
from graph.errors import invalid_input
from graph.markets.queries import check_depth
from graph.markets.types_book import BookUpdateType, OrderBookLevel, OrderBookUpdate
from graph.orders.types import OrderSide, Trade

Info = strawberry.Info[Context, None]


def _snapshot_update(snapshot: BookSnapshot) -> OrderBookUpdate:
    return OrderBookUpdate(
        type=BookUpdateType.SNAPSHOT,
        symbol=snapshot.symbol,
        sequence=snapshot.sequence,
        bids=[OrderBookLevel.from_level(level) for level in snapshot.bids],
        asks=[OrderBookLevel.from_level(level) for level in snapshot.asks],
    )


def _delta(symbol: str, change: dict[str, object]) -> OrderBookUpdate:
    level = OrderBookLevel.from_level(
        Level(
            Decimal(str(change["price"])),
            Decimal(str(change["quantity"])),
            int(str(change["orders"])),
        )
    )
    bid = change["side"] == "BUY"
    return OrderBookUpdate(
        type=BookUpdateType.DELTA,
        symbol=symbol,
        sequence=int(str(change["sequence"])),
        bids=[level] if bid else [],
        asks=[] if bid else [level],
    )


async def _known_symbol(info: Info, symbol: str) -> str:
    market = await info.context.services.markets.get(symbol)
    if market is None:
        raise invalid_input(f"no market {symbol!r}", "symbol")
    return market.symbol


@strawberry.type
class MarketSubscriptions:
    @strawberry.subscription(
        description="The book: a SNAPSHOT (depth levels a side), then one DELTA per change."
    )
    async def order_book(
        self, info: Info, symbol: str, depth: int = 20
    ) -> AsyncGenerator[OrderBookUpdate, None]:
        check_depth(depth)
        symbol = await _known_symbol(info, symbol)
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
                message = json.loads(event.message)
                if message.get("type") != "delta":
                    continue
                changes = [c for c in message["levels"] if c["sequence"] > last]
                if changes and changes[0]["sequence"] != last + 1:
                    # A change went missing between snapshot and stream: start again.
                    snapshot = await read_snapshot()
                    last = snapshot.sequence
                    yield _snapshot_update(snapshot)
                    continue
                for change in changes:
                    last = change["sequence"]
                    yield _delta(symbol, change)

    @strawberry.subscription(description="Every trade on a market as it happens.")
    async def trades(self, info: Info, symbol: str) -> AsyncGenerator[Trade, None]:
        symbol = await _known_symbol(info, symbol)
        services = info.context.services
        async with services.broadcast.subscribe(services.keys.trades_channel(symbol)) as sub:
            async for event in sub:
                if event.message in (GAP, OVERFLOW):
                    continue
                for trade in json.loads(event.message)["trades"]:
                    yield Trade(
                        id=strawberry.ID(str(trade["id"])),
                        symbol=trade["symbol"],
                        price=Decimal(trade["price"]),
                        quantity=Decimal(trade["quantity"]),
                        taker_side=OrderSide(trade["taker_side"]),
                        executed_at=datetime.fromisoformat(trade["executed_at"]),
                    )
