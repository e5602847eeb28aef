from __future__ import annotations

import strawberry

from app.orders.service import AmendOrderRequest, Outcome, PlaceOrderRequest
from graph.context import Context
from graph.errors import ErrorCode, UserError, user_errors
from graph.ids import parse_id
from graph.orders.types import (
    AmendOrderInput,
    AmendOrderPayload,
    CancelAllOrdersPayload,
    CancelOrderPayload,
    Fill,
    Order,
    PlaceOrderInput,
    PlaceOrderPayload,
)
from graph.permissions import IsAuthenticated, require_viewer

Info = strawberry.Info[Context, None]


def _order(outcome: Outcome) -> Order | None:
    return Order.from_wire(outcome.order) if outcome.order is not None else None


def _not_found(field: str) -> list[UserError]:
    return [UserError(code=ErrorCode.NOT_FOUND, field=field, message="no such order")]


@strawberry.type
class OrderMutations:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Place a LIMIT or MARKET order; `fills` are the trades it made at once.",
    )
    async def place_order(self, info: Info, input: PlaceOrderInput) -> PlaceOrderPayload | None:
        viewer = await require_viewer(info)
        user = await info.context.loaders.user.load(viewer.user_id)
        outcome = await info.context.services.trading.place(
            viewer.user_id,
            user.kyc_status if user is not None else "pending",
            PlaceOrderRequest(
                symbol=input.symbol.strip().upper(),
                side=input.side.value,
                type=input.type.value,
                quantity=input.quantity,
                price=input.price,
                time_in_force=input.time_in_force.value,
                post_only=input.post_only,
                client_order_id=input.client_order_id,
            ),
        )
        return PlaceOrderPayload(
            order=_order(outcome),
            fills=[Fill.from_wire(fill, viewer.user_id) for fill in outcome.fills],
            errors=user_errors(outcome.problems),
        )

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Change an open order's quantity and/or price.",
    )
    async def amend_order(self, info: Info, input: AmendOrderInput) -> AmendOrderPayload | None:
        viewer = await require_viewer(info)
        order_id = parse_id(input.id)
        if order_id is None:
            return AmendOrderPayload(order=None, errors=_not_found("id"))
        outcome = await info.context.services.trading.amend(
            viewer.user_id,
            AmendOrderRequest(order_id=order_id, quantity=input.quantity, price=input.price),
        )
        return AmendOrderPayload(order=_order(outcome), errors=user_errors(outcome.problems))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Cancel one open order, by `id` or by `clientOrderId`.",
    )
    async def cancel_order(
        self,
        info: Info,
        id: strawberry.ID | None = None,
        client_order_id: str | None = None,
    ) -> CancelOrderPayload | None:
        viewer = await require_viewer(info)
        order_id = parse_id(id) if id is not None else None
        if id is not None and order_id is None:
            return CancelOrderPayload(order=None, errors=_not_found("id"))
        outcome = await info.context.services.trading.cancel(
            viewer.user_id, order_id=order_id, client_order_id=client_order_id
        )
        return CancelOrderPayload(order=_order(outcome), errors=user_errors(outcome.problems))

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Cancel all your open orders, on one market or on all of them.",
    )
    async def cancel_all_orders(
        self, info: Info, symbol: str | None = None
    ) -> CancelAllOrdersPayload | None:
        viewer = await require_viewer(info)
        outcome = await info.context.services.trading.cancel_all(viewer.user_id, symbol)
        return CancelAllOrdersPayload(
            cancelled_count=outcome.cancelled_count, errors=user_errors(outcome.problems)
        )
