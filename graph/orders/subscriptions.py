"""Your own orders and fills, live."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from app import wire
from app.kit.pubsub import GAP, OVERFLOW
from graph.context import Context
from graph.errors import unauthenticated
from graph.orders.types import Fill, Order
from graph.permissions import IsAuthenticated, require_viewer

Info = strawberry.Info[Context, None]


async def _user_id(info: Info) -> int:
    return (await require_viewer(info)).user_id


async def _still_signed_in(info: Info) -> None:
    """A logout (or a newer login) ends a running subscription at its next message."""
    if not await info.context.session_still_live():
        raise unauthenticated("your session has ended")


@strawberry.type
class OrderSubscriptions:
    @strawberry.subscription(
        permission_classes=[IsAuthenticated], description="Your fills as they happen."
    )
    async def my_fills(self, info: Info) -> AsyncGenerator[Fill, None]:
        user_id = await _user_id(info)
        services = info.context.services
        async with services.broadcast.subscribe(services.keys.user_channel(user_id)) as sub:
            async for event in sub:
                if event.message in (GAP, OVERFLOW):
                    continue
                events = wire.decode_user_events(event.message).events
                fills = [e for e in events if isinstance(e, wire.FillEvent)]
                if fills:
                    await _still_signed_in(info)
                for fill in fills:
                    yield Fill.on_side(fill.trade, fill.side)

    @strawberry.subscription(
        permission_classes=[IsAuthenticated],
        description="Your orders, in their new state, each time one changes.",
    )
    async def my_orders(self, info: Info) -> AsyncGenerator[Order, None]:
        user_id = await _user_id(info)
        services = info.context.services
        async with services.broadcast.subscribe(services.keys.user_channel(user_id)) as sub:
            async for event in sub:
                if event.message in (GAP, OVERFLOW):
                    continue
                # Each order once per message, in its last state there (as committed).
                orders = {
                    e.order.id: e.order
                    for e in wire.decode_user_events(event.message).events
                    if isinstance(e, wire.OrderEvent)
                }
                if orders:
                    await _still_signed_in(info)
                    for order in orders.values():
                        yield Order.from_wire(order)
