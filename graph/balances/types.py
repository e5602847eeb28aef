from __future__ import annotations

from decimal import Decimal

import strawberry

from app import wire
from app.accounts.models import Balance as BalanceRow
from app.kit.money import plain
from graph.errors import UserError


@strawberry.type(description="What you hold of one asset: available to use, locked by orders.")
class Balance:
    asset: str
    available: Decimal
    locked: Decimal
    total: Decimal

    @classmethod
    def from_row(cls, row: BalanceRow) -> Balance:
        return cls(
            asset=row.asset,
            available=plain(row.available),
            locked=plain(row.locked),
            total=plain(row.available + row.locked),
        )

    @classmethod
    def from_wire(cls, row: wire.BalanceRow) -> Balance:
        available, locked = Decimal(row.available), Decimal(row.locked)
        return cls(
            asset=row.asset, available=available, locked=locked, total=plain(available + locked)
        )


@strawberry.type
class BalancePayload:
    balance: Balance | None
    errors: list[UserError]
