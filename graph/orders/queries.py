from __future__ import annotations

import strawberry

from graph.context import Context
from graph.ids import parse_id
from graph.orders.types import Fill, Order, OrderStatus, Trade
from graph.pagination import DEFAULT_PAGE_SIZE, Connection, connection, page_request
from graph.permissions import IsAuthenticated, require_viewer

Info = strawberry.Info[Context, None]


async def _user_id(info: Info) -> int:
    return (await require_viewer(info)).user_id


@strawberry.type
class OrderQueries:
    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="Your orders, newest first; filter by market and status.",
    )
    async def orders(
        self,
        info: Info,
        symbol: str | None = None,
        status: OrderStatus | None = None,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> Connection[Order] | None:
        user_id = await _user_id(info)
        page = await info.context.services.trading.orders(
            user_id,
            page_request(first, after),
            symbol=symbol.upper() if symbol else None,
            statuses=[status.value] if status else None,
        )
        return connection(page, Order.from_row, after=after)

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="One of your orders; null if there is none with that id (or it is not yours).",
    )
    async def order(self, info: Info, id: strawberry.ID) -> Order | None:
        user_id = await _user_id(info)
        order_id = parse_id(id)
        if order_id is None:
            return None
        row = await info.context.services.trading.order(user_id, order_id)
        return Order.from_row(row) if row is not None else None

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="Your fills (your side of each trade), newest first.",
    )
    async def fills(
        self,
        info: Info,
        symbol: str | None = None,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> Connection[Fill] | None:
        user_id = await _user_id(info)
        page = await info.context.services.trading.fills(
            user_id, page_request(first, after), symbol=symbol.upper() if symbol else None
        )
        return connection(page, lambda row: Fill.from_row(row, user_id), after=after)

    @strawberry.field(description="A market's trades, newest first (public).")
    async def trades(
        self,
        info: Info,
        symbol: str,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> Connection[Trade]:
        page = await info.context.services.trading.trades(symbol, page_request(first, after))
        return connection(page, Trade.from_row, after=after)
