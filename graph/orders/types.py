from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import Enum

import strawberry

from app.kit.money import plain
from app.orders.models import Order as OrderRow
from app.orders.models import Trade as TradeRow
from graph.errors import UserError


@strawberry.enum
class OrderSide(Enum):
    BUY = "BUY"
    SELL = "SELL"


@strawberry.enum
class OrderType(Enum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"


@strawberry.enum(description="GTC rests until filled or cancelled; IOC and FOK never rest.")
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


@strawberry.enum(description="Why an order was cancelled.")
class CancelReason(Enum):
    USER = "USER"
    IOC = "IOC"
    FOK = "FOK"
    MARKET = "MARKET"
    SELF_TRADE = "SELF_TRADE"
    HALT = "HALT"


@strawberry.enum(description="MAKER rested on the book; TAKER traded against it.")
class Liquidity(Enum):
    MAKER = "MAKER"
    TAKER = "TAKER"


@strawberry.type(description="One of your orders.")
class Order:
    id: strawberry.ID
    symbol: str
    side: OrderSide
    type: OrderType
    time_in_force: TimeInForce
    post_only: bool
    quantity: Decimal
    price: Decimal | None = strawberry.field(description="Null for MARKET orders.")
    filled_quantity: Decimal
    remaining_quantity: Decimal
    status: OrderStatus
    client_order_id: str | None
    cancel_reason: CancelReason | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: OrderRow) -> Order:
        return cls(
            id=strawberry.ID(str(row.id)),
            symbol=row.symbol,
            side=OrderSide(row.side),
            type=OrderType(row.type),
            time_in_force=TimeInForce(row.time_in_force),
            post_only=row.post_only,
            quantity=plain(row.quantity),
            price=plain(row.price) if row.price is not None else None,
            filled_quantity=plain(row.filled_quantity),
            remaining_quantity=plain(row.quantity - row.filled_quantity),
            status=OrderStatus(row.status),
            client_order_id=row.client_order_id,
            cancel_reason=CancelReason(row.cancel_reason) if row.cancel_reason else None,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


@strawberry.type(description="A trade on a market, as everyone sees it.")
class Trade:
    id: strawberry.ID
    symbol: str
    price: Decimal
    quantity: Decimal
    taker_side: OrderSide
    executed_at: datetime

    @classmethod
    def from_row(cls, row: TradeRow) -> Trade:
        return cls(
            id=strawberry.ID(str(row.id)),
            symbol=row.symbol,
            price=plain(row.price),
            quantity=plain(row.quantity),
            taker_side=OrderSide(row.taker_side),
            executed_at=row.executed_at,
        )


@strawberry.type(description="Your side of a trade: what you bought or sold, and your fee.")
class Fill:
    id: strawberry.ID = strawberry.field(description="The trade's id.")
    order_id: strawberry.ID
    symbol: str
    side: OrderSide
    price: Decimal
    quantity: Decimal
    quote_quantity: Decimal = strawberry.field(description="price × quantity.")
    fee: Decimal
    fee_asset: str = strawberry.field(description="Buyers pay in the base, sellers in the quote.")
    liquidity: Liquidity
    executed_at: datetime

    @classmethod
    def from_row(cls, row: TradeRow, user_id: int) -> Fill:
        buyer = row.buyer_user_id == user_id
        base, quote = row.symbol.split("-")
        side = "BUY" if buyer else "SELL"
        return cls(
            id=strawberry.ID(str(row.id)),
            order_id=strawberry.ID(str(row.buyer_order_id if buyer else row.seller_order_id)),
            symbol=row.symbol,
            side=OrderSide(side),
            price=plain(row.price),
            quantity=plain(row.quantity),
            quote_quantity=plain(row.price * row.quantity),
            fee=plain(row.buyer_fee if buyer else row.seller_fee),
            fee_asset=base if buyer else quote,
            liquidity=Liquidity.TAKER if row.taker_side == side else Liquidity.MAKER,
            executed_at=row.executed_at,
        )


@strawberry.input
class PlaceOrderInput:
    symbol: str
    side: OrderSide
    type: OrderType
    quantity: Decimal
    price: Decimal | None = strawberry.field(
        default=None, description="Required for LIMIT, absent for MARKET."
    )
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = strawberry.field(
        default=False, description="LIMIT only: rejected (POST_ONLY_WOULD_TAKE) if it would take."
    )
    client_order_id: str | None = strawberry.field(
        default=None,
        description="Your idempotency key (1-64 of A-Z a-z 0-9 . _ : -): placing the same one "
        "again returns the original order and does nothing else.",
    )


@strawberry.input
class AmendOrderInput:
    id: strawberry.ID
    quantity: Decimal | None = strawberry.field(
        default=None,
        description="The new total quantity, including what is already filled (it must "
        "exceed that). Lowering it keeps time priority; raising it loses it.",
    )
    price: Decimal | None = strawberry.field(
        default=None, description="A new price moves the order to the back of its new level."
    )


@strawberry.type
class PlaceOrderPayload:
    order: Order | None
    fills: list[Fill]
    errors: list[UserError]


@strawberry.type
class AmendOrderPayload:
    order: Order | None
    errors: list[UserError]


@strawberry.type
class CancelOrderPayload:
    order: Order | None
    errors: list[UserError]


@strawberry.type(
    description="One result per input, in order (`results` is empty when `errors` refuses "
    "the whole batch)."
)
class PlaceOrdersPayload:
    results: list[PlaceOrderPayload]
    errors: list[UserError] = strawberry.field(
        description="Refusals of the batch as a whole (more than 100 orders): nothing placed."
    )


@strawberry.type(
    description="One result per id, in order (`results` is empty when `errors` refuses "
    "the whole batch)."
)
class CancelOrdersPayload:
    results: list[CancelOrderPayload]
    errors: list[UserError] = strawberry.field(
        description="Refusals of the batch as a whole (more than 100 ids): nothing cancelled."
    )


@strawberry.type
class CancelAllOrdersPayload:
    cancelled_count: int
    errors: list[UserError]
