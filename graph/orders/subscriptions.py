"""Your own orders and fills, live."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

import strawberry

from app import wire
from app.kit.pubsub import GAP, SlowConsumer
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


async def _my_events(info: Info) -> AsyncGenerator[list[wire.OrderEvent | wire.FillEvent], None]:
    """The caller's events, message by message, never one skipped: a subscriber that falls
    ``subscription_queue_size`` messages behind is sent everything queued until then and
    its connection is then closed with 4480 (slow consumer), so it knows to reconnect and
    read the rest from the ``orders`` / ``fills`` queries. After a lost Redis connection
    (:data:`GAP`) it carries on: what was published meanwhile is lost (see the README)."""
    user_id = await _user_id(info)
    services = info.context.services
    channel = services.keys.user_channel(user_id)
    async with services.broadcast.subscribe(channel, lossless=True) as sub:
        try:
            async for event in sub:
                if event.message != GAP:
                    yield wire.decode_user_events(event.message).events
        except SlowConsumer as behind:
            await info.context.close_slow_consumer(f"slow consumer: {behind}")


@strawberry.type
class OrderSubscriptions:
    @strawberry.subscription(
        permission_classes=[IsAuthenticated], description="Your fills as they happen."
    )
    async def my_fills(self, info: Info) -> AsyncGenerator[Fill, None]:
        async with aclosing(_my_events(info)) as stream:
            async for events in stream:
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
        async with aclosing(_my_events(info)) as stream:
            async for events in stream:
                # Each order once per message, in its last state there (as committed).
                orders = {e.order.id: e.order for e in events if isinstance(e, wire.OrderEvent)}
                if orders:
                    await _still_signed_in(info)
                    for order in orders.values():
                        yield Order.from_wire(order)
