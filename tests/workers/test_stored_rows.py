"""The rows the worker replies with are the rows it stores, and after a restart it knows
them again from PostgreSQL (``load_open_orders``) exactly as it replied with them."""

from __future__ import annotations

import asyncpg

from app import wire
from app.kit.bus import CommandBus
from tests.support.exchange import deposit
from tests.workers.conftest import NewTrader
from workers.matching.store import load_open_orders


async def test_the_open_orders_read_back_are_the_ones_replied(
    bus: CommandBus, trader: NewTrader, db: asyncpg.Connection
) -> None:
    alice = await trader()
    await deposit(bus, alice, "USDT", "1000")
    placed = []
    for price, client_order_id in (("100", "rows-1"), ("99.5", None)):
        reply = await bus.send(
            wire.Place(
                user_id=alice,
                symbol="ETH-USDT",
                side=wire.Side.BUY,
                type=wire.OrderType.LIMIT,
                quantity="0.2",
                price=price,
                post_only=True,
                client_order_id=client_order_id,
            )
        )
        assert reply.ok and reply.order is not None, reply
        placed.append(reply.order)
    amended = await bus.send(wire.Amend(user_id=alice, order_id=placed[1].id, quantity="0.1"))
    assert amended.order is not None and amended.order.quantity == "0.1"
    assert amended.order.updated_at > placed[1].updated_at
    stored = await load_open_orders(db)
    assert [stored[placed[0].id], stored[placed[1].id]] == [placed[0], amended.order]
