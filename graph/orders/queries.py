from __future__ import annotations

from typing import Annotated

import strawberry

from graph.context import Context
from graph.errors import invalid_input
from graph.ids import parse_id
from graph.markets.queries import require_market
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
        description="Your orders, newest first; filter by market and by `status` or "
        "`statuses` (your open orders: `statuses: [PENDING, PARTIAL]`).",
    )
    async def orders(
        self,
        info: Info,
        symbol: str | None = None,
        status: OrderStatus | None = None,
        statuses: Annotated[
            list[OrderStatus] | None,
            strawberry.argument(
                description="Any of these statuses; [PENDING, PARTIAL] = the open orders."
            ),
        ] = None,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> Connection[Order] | None:
        user_id = await _user_id(info)
        if status is not None and statuses is not None:
            raise invalid_input("give `status` or `statuses`, not both", "statuses")
        wanted = [status] if status is not None else statuses
        if wanted is not None and not wanted:
            raise invalid_input("`statuses` needs at least one status", "statuses")
        request = page_request(first, after)
        page = await info.context.services.trading.orders(
            user_id,
            request,
            symbol=await require_market(info, symbol) if symbol is not None else None,
            statuses=sorted({item.value for item in wanted}) if wanted else None,
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
        request = page_request(first, after)
        page = await info.context.services.trading.fills(
            user_id,
            request,
            symbol=await require_market(info, symbol) if symbol is not None else None,
        )
        return connection(page, lambda row: Fill.from_row(row, user_id), after=after)

    @strawberry.field(
        description="A market's trades, newest first (public); an unknown symbol is NOT_FOUND."
    )
    async def trades(
        self,
        info: Info,
        symbol: str,
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> Connection[Trade]:
        request = page_request(first, after)
        page = await info.context.services.trading.trades(
            await require_market(info, symbol), request
        )
        return connection(page, Trade.from_row, after=after)
