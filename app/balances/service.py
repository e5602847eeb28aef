"""Balances: read from PostgreSQL; deposits and withdrawals go through the worker, whose
reply carries the balance it committed."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import wire
from app.accounts.models import Balance
from app.balances import repository
from app.kit.bus import CommandBus
from app.kit.commands import dispatch
from app.kit.errors import Problem
from app.kit.money import MAX_AMOUNT, MAX_DECIMALS
from app.orders import errors

ASSET = re.compile(r"^[A-Z0-9]{1,20}$")
MAX_KEY = 48


@dataclass
class FundsOutcome:
    balance: wire.BalanceRow | None = None
    problems: list[Problem] = field(default_factory=list)


class BalanceService:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], bus: CommandBus, *, timeout: float
    ) -> None:
        self._sessions = sessions
        self._bus = bus
        self._timeout = timeout

    async def of_user(self, user_id: int) -> Sequence[Balance]:
        async with self._sessions() as session:
            return await repository.list_balances(session, user_id)

    async def of_users(self, user_ids: Sequence[int]) -> Sequence[Balance]:
        async with self._sessions() as session:
            return await repository.balances_of(session, user_ids)

    async def move(
        self, kind: str, user_id: int, asset: str, amount: Decimal, command_id: str | None
    ) -> FundsOutcome:
        """``kind`` is ``deposit`` or ``withdraw``; ``command_id`` makes a retry safe."""
        asset = asset.upper()
        problems: list[Problem] = []
        if not ASSET.fullmatch(asset):
            problems.append(Problem(errors.INVALID_INPUT, "not an asset code", "asset"))
        if not amount.is_finite() or amount <= 0:
            problems.append(Problem(errors.INVALID_INPUT, "amount must be positive", "amount"))
        elif amount > MAX_AMOUNT:
            problems.append(Problem(errors.INVALID_INPUT, f"at most {MAX_AMOUNT}", "amount"))
        elif amount.as_tuple().exponent < -MAX_DECIMALS:  # type: ignore[operator]
            problems.append(
                Problem(errors.INVALID_INPUT, f"at most {MAX_DECIMALS} decimals", "amount")
            )
        if command_id is not None:
            if not 1 <= len(command_id) <= MAX_KEY:
                problems.append(
                    Problem(errors.INVALID_INPUT, f"1 to {MAX_KEY} characters", "idempotencyKey")
                )
            command_id = f"{kind}:{command_id}"
        if problems:
            return FundsOutcome(problems=problems)
        move = wire.Deposit if kind == "deposit" else wire.Withdraw
        command = move(user_id=user_id, asset=asset, amount=wire.decimal_text(amount))
        reply = await dispatch(self._bus, command, command_id=command_id, timeout=self._timeout)
        if isinstance(reply, Problem):
            return FundsOutcome(problems=[reply])
        return FundsOutcome(balance=reply.balance)
