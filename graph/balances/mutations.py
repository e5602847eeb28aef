from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import strawberry

from app.balances.service import MAX_KEY
from graph.balances.types import Balance, BalancePayload
from graph.context import Context
from graph.errors import ErrorCode, UserError, user_errors
from graph.ids import parse_id
from graph.permissions import IsAdmin

Info = strawberry.Info[Context, None]


async def _move(
    info: Info, kind: str, user_id: strawberry.ID, asset: str, amount: Decimal, key: str | None
) -> BalancePayload:
    target = parse_id(user_id)
    if target is None:
        message = f"no user with id {user_id!r}"
        return BalancePayload(
            balance=None,
            errors=[UserError(code=ErrorCode.NOT_FOUND, field="userId", message=message)],
        )
    outcome = await info.context.services.balances.move(kind, target, asset, amount, key)
    return BalancePayload(
        balance=Balance.from_wire(outcome.balance) if outcome.balance else None,
        errors=user_errors(outcome.problems),
    )


IDEMPOTENCY = f"A key of yours (1-{MAX_KEY} characters): repeating it moves nothing."


@strawberry.type
class BalanceMutations:
    @strawberry.mutation(permission_classes=[IsAdmin], description="Admin: credit a balance.")
    async def deposit(
        self,
        info: Info,
        user_id: strawberry.ID,
        asset: str,
        amount: Decimal,
        idempotency_key: Annotated[str | None, strawberry.argument(description=IDEMPOTENCY)] = None,
    ) -> BalancePayload | None:
        return await _move(info, "deposit", user_id, asset, amount, idempotency_key)

    @strawberry.mutation(permission_classes=[IsAdmin], description="Admin: debit a balance.")
    async def withdraw(
        self,
        info: Info,
        user_id: strawberry.ID,
        asset: str,
        amount: Decimal,
        idempotency_key: Annotated[str | None, strawberry.argument(description=IDEMPOTENCY)] = None,
    ) -> BalancePayload | None:
        return await _move(info, "withdraw", user_id, asset, amount, idempotency_key)
