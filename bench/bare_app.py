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
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
from enum import Enum
from itertools import count

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


schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
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
