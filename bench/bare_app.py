"""The benchmark's denominator: a bare Strawberry mutation that does no work.

``python -m bench.bare_app --port N`` serves it with one uvicorn process on uvloop and
httptools. ``placeOrder`` takes the same ``PlaceOrderInput`` and answers the same
``PlaceOrderPayload { order fills errors }`` as the real API, made from the input alone: no
authentication, database, Redis or worker. Strawberry is used as it ships (``strawberry.asgi``
with its defaults) plus its own parser and validation caches (``ParserCache``,
``ValidationCache``, as the real schema has them): without them graphql-core validates the
document again on every request, ~10× the cost of the rest, and the denominator would be a
straw man. So the figure is "what the framework allows" on this machine.

``placeOrders(inputs: [PlaceOrderInput!]!)`` answers one payload per entry, the shape the
real batch mutation has; the harness uses it to test its batch path.

The fan-out baseline: ``subscription { orderBook(symbol, depth) }`` answers the real
subscription's shape (a SNAPSHOT, then one DELTA per changed level with its ``sequence``).
With ``BENCH_BARE_REDIS_URL`` and ``BENCH_BARE_BOOK_CHANNEL`` set, each process listens to
that Redis channel (the real worker's book deltas) once and hands every message to each
subscriber's queue as it comes: no snapshot read, no session, no bound, no resync. So its
figure is what Strawberry and uvicorn allow for fan-out on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import decimal
import os
from collections.abc import AsyncGenerator
from enum import Enum
from itertools import count

import orjson
import strawberry
import uvicorn
from strawberry.asgi import GraphQL
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.types.scalar import ScalarDefinition


def _parse_decimal(value: object) -> decimal.Decimal:
    if not isinstance(value, str):
        raise ValueError("a Decimal is a string")
    return decimal.Decimal(value)


DECIMAL = ScalarDefinition(
    name="Decimal",
    description=None,
    specified_by_url=None,
    serialize=str,
    parse_value=_parse_decimal,
    parse_literal=None,
    origin=decimal.Decimal,
)


@strawberry.enum
class OrderSide(Enum):
    BUY = "BUY"
    SELL = "SELL"


@strawberry.enum
class OrderType(Enum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"


@strawberry.enum
class TimeInForce(Enum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


@strawberry.enum
class OrderStatus(Enum):
    PENDING = "PENDING"
    PARTIAL = "PARTIAL"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"


@strawberry.enum
class Liquidity(Enum):
    MAKER = "MAKER"
    TAKER = "TAKER"


@strawberry.input
class PlaceOrderInput:
    symbol: str
    side: OrderSide
    type: OrderType
    quantity: decimal.Decimal
    price: decimal.Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    client_order_id: str | None = None


@strawberry.type
class Order:
    id: strawberry.ID
    symbol: str
    side: OrderSide
    type: OrderType
    time_in_force: TimeInForce
    post_only: bool
    quantity: decimal.Decimal
    price: decimal.Decimal | None
    filled_quantity: decimal.Decimal
    remaining_quantity: decimal.Decimal
    status: OrderStatus
    client_order_id: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


@strawberry.type
class Fill:
    id: strawberry.ID
    order_id: strawberry.ID
    symbol: str
    side: OrderSide
    price: decimal.Decimal
    quantity: decimal.Decimal
    quote_quantity: decimal.Decimal
    fee: decimal.Decimal
    fee_asset: str
    liquidity: Liquidity
    executed_at: dt.datetime


@strawberry.type
class UserError:
    code: str
    field: str | None
    message: str


@strawberry.type
class PlaceOrderPayload:
    order: Order | None
    fills: list[Fill]
    errors: list[UserError]


_ids = count(1)
_EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _accept(entry: PlaceOrderInput) -> PlaceOrderPayload:
    order = Order(
        id=strawberry.ID(str(next(_ids))),
        symbol=entry.symbol,
        side=entry.side,
        type=entry.type,
        time_in_force=entry.time_in_force,
        post_only=entry.post_only,
        quantity=entry.quantity,
        price=entry.price,
        filled_quantity=decimal.Decimal(0),
        remaining_quantity=entry.quantity,
        status=OrderStatus.PENDING,
        client_order_id=entry.client_order_id,
        created_at=_EPOCH,
        updated_at=_EPOCH,
    )
    return PlaceOrderPayload(order=order, fills=[], errors=[])


@strawberry.type
class Query:
    @strawberry.field
    def ok(self) -> bool:
        return True


@strawberry.type
class Mutation:
    @strawberry.mutation
    def place_order(self, input: PlaceOrderInput) -> PlaceOrderPayload:
        return _accept(input)

    @strawberry.mutation
    def place_orders(self, inputs: list[PlaceOrderInput]) -> list[PlaceOrderPayload]:
        return [_accept(entry) for entry in inputs]


@strawberry.enum
class BookUpdateType(Enum):
    SNAPSHOT = "SNAPSHOT"
    DELTA = "DELTA"


@strawberry.type
class OrderBookLevel:
    price: decimal.Decimal
    quantity: decimal.Decimal
    orders: int


@strawberry.type
class OrderBookUpdate:
    type: BookUpdateType
    symbol: str
    sequence: int
    bids: list[OrderBookLevel]
    asks: list[OrderBookLevel]


class _Book:
    """One Redis subscription per process, every message to every subscriber's queue."""

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue[bytes]] = set()
        self.listener: asyncio.Task[None] | None = None

    async def _listen(self, url: str, channel: str) -> None:
        from redis.asyncio import Redis

        pubsub = Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(channel)
        async for message in pubsub.listen():
            if message["type"] == "message":
                for queue in self.queues:
                    queue.put_nowait(message["data"])

    def join(self) -> asyncio.Queue[bytes]:
        url, channel = (
            os.environ.get("BENCH_BARE_REDIS_URL"),
            os.environ.get("BENCH_BARE_BOOK_CHANNEL"),
        )
        if self.listener is None and url and channel:
            self.listener = asyncio.create_task(self._listen(url, channel))
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.queues.add(queue)
        return queue


_BOOK = _Book()


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def order_book(
        self, symbol: str, depth: int = 20
    ) -> AsyncGenerator[OrderBookUpdate, None]:
        queue = _BOOK.join()
        try:
            yield OrderBookUpdate(
                type=BookUpdateType.SNAPSHOT, symbol=symbol, sequence=0, bids=[], asks=[]
            )
            while True:
                for change in orjson.loads(await queue.get()).get("levels", ()):
                    level = OrderBookLevel(
                        price=decimal.Decimal(change["price"]),
                        quantity=decimal.Decimal(change["quantity"]),
                        orders=change["orders"],
                    )
                    bid = change["side"] == "BUY"
                    yield OrderBookUpdate(
                        type=BookUpdateType.DELTA,
                        symbol=symbol,
                        sequence=change["sequence"],
                        bids=[level] if bid else [],
                        asks=[] if bid else [level],
                    )
        finally:
            _BOOK.queues.discard(queue)


schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    config=StrawberryConfig(scalar_map={decimal.Decimal: DECIMAL}),
    extensions=[lambda: ParserCache(maxsize=128), lambda: ValidationCache(maxsize=128)],
)
app = GraphQL(schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn processes")
    args = parser.parse_args()
    uvicorn.run(
        "bench.bare_app:app" if args.workers > 1 else app,
        host=args.host,
        port=args.port,
        workers=args.workers if args.workers > 1 else None,
        loop="uvloop",
        http="httptools",
        log_level="warning",
    )


if __name__ == "__main__":
    main()
