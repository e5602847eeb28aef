from __future__ import annotations

import strawberry

from app.markets.cache import MarketInfo
from graph.context import Context
from graph.errors import invalid_input, not_found
from graph.markets.types import Market
from graph.markets.types_book import OrderBook

MAX_DEPTH = 100


def check_depth(depth: int) -> None:
    if not 1 <= depth <= MAX_DEPTH:
        raise invalid_input(f"`depth` must be between 1 and {MAX_DEPTH}", "depth")


async def find_market(info: strawberry.Info[Context, None], symbol: str) -> MarketInfo:
    """The market of ``symbol`` (any case), or a top-level ``NOT_FOUND`` error with
    ``extensions.argument: "symbol"``: every market-data query and subscription asks here."""
    row = await info.context.services.markets.get(symbol)
    if row is None:
        raise not_found(f"no market {symbol!r}", "symbol")
    return row


async def require_market(info: strawberry.Info[Context, None], symbol: str) -> str:
    """The market's symbol as stored; a top-level ``NOT_FOUND`` if there is no such market."""
    return (await find_market(info, symbol)).symbol


@strawberry.type
class MarketQueries:
    @strawberry.field(description="Every market, by symbol.")
    async def markets(self, info: strawberry.Info[Context, None]) -> list[Market]:
        rows = await info.context.services.markets.list()
        return [Market.from_row(row) for row in rows]

    @strawberry.field(description="One market (any case); an unknown symbol is NOT_FOUND.")
    async def market(self, info: strawberry.Info[Context, None], symbol: str) -> Market | None:
        return Market.from_row(await find_market(info, symbol))

    @strawberry.field(
        description=f"A market's book by price level, best first (depth 1-{MAX_DEPTH}); "
        "an unknown symbol is a NOT_FOUND error."
    )
    async def order_book(
        self, info: strawberry.Info[Context, None], symbol: str, depth: int = 20
    ) -> OrderBook | None:
        check_depth(depth)
        symbol = await require_market(info, symbol)
        snapshot = await info.context.services.markets.order_book(symbol, depth)
        return OrderBook.from_snapshot(snapshot)
