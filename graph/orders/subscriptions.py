"""Your own orders and fills, live."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from datetime import datetime
from decimal import Decimal

import strawberry

from app.kit.pubsub import GAP, OVERFLOW
from graph.context import Context
from graph.errors import unauthenticated
from graph.orders.types import Fill, Liquidity, Order, OrderSide
from graph.permissions import IsAuthenticated, require_viewer

Info = strawberry.Info[Context, None]


async def _user_id(info: Info) -> int:
    return (await require_viewer(info)).user_id


async def _still_signed_in(info: Info) -> None:
    """A logout (or a newer login) ends a running subscription at its next message."""
    if not await info.context.session_still_live():
        raise unauthenticated("your session has ended")


def _fill(message: dict[str, object]) -> Fill:
    side = str(message["side"])
    buyer = side == "BUY"
    base, quote = str(message["symbol"]).split("-")
    return Fill(
        id=strawberry.ID(str(message["id"])),
        order_id=strawberry.ID(str(message["buyer_order_id" if buyer else "seller_order_id"])),
        symbol=str(message["symbol"]),
        side=OrderSide(side),
        price=Decimal(str(message["price"])),
        quantity=Decimal(str(message["quantity"])),
        quote_quantity=Decimal(str(message["quote_quantity"])),
        fee=Decimal(str(message["buyer_fee" if buyer else "seller_fee"])),
        fee_asset=base if buyer else quote,
        liquidity=Liquidity.TAKER if message["taker_side"] == side else Liquidity.MAKER,
        executed_at=datetime.fromisoformat(str(message["executed_at"])),
    )


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
                fills = [m for m in json.loads(event.message)["events"] if m["type"] == "fill"]
                if fills:
                    await _still_signed_in(info)
                for message in fills:
                    yield _fill(message)

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
                ids: list[int] = []
                for message in json.loads(event.message)["events"]:
                    if message["type"] == "order" and message["order_id"] not in ids:
                        ids.append(message["order_id"])
                if ids:
                    await _still_signed_in(info)
                    # The worker published after its commit: the rows hold the new state.
                    rows = {row.id: row for row in await services.trading.orders_by_ids(ids)}
                    for order_id in ids:
                        if order_id in rows:
                            yield Order.from_row(rows[order_id])
