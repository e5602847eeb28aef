"""Admins' risk controls: market limits and circuit breakers, trading suspensions,
position limits. The matching worker applies them; the engine enforces them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import msgspec
import strawberry

from app import wire
from app.kit.errors import Problem
from app.kit.money import plain
from app.risk.controls import MarketLimitsRow, PositionLimitRow
from graph.context import Context
from graph.errors import ErrorCode, UserError, user_errors
from graph.ids import parse_id
from graph.permissions import IsAdmin

Info = strawberry.Info[Context, None]


@strawberry.type(description="A market's pre-trade limits and circuit breaker.")
class MarketRiskLimits:
    symbol: str
    max_order_quantity: Decimal | None = strawberry.field(
        description="The largest order, in the base asset (null: no limit)."
    )
    max_order_notional: Decimal | None = strawberry.field(
        description="The largest limit order value, price × quantity, in the quote asset."
    )
    price_band_percent: Decimal | None = strawberry.field(
        description="A limit order priced further than this from the last trade (or the mid "
        "before any trade) is refused RISK_REJECTED; a market order stops at the band."
    )
    circuit_breaker_percent: Decimal | None = strawberry.field(
        description="The market halts itself when its trades within the window span more "
        "than this (null: no breaker)."
    )
    circuit_breaker_window_seconds: int
    circuit_breaker_cooldown_seconds: int = strawberry.field(
        description="How long a breaker's halt lasts before trading resumes by itself."
    )
    halted_until: datetime | None = strawberry.field(
        description="While a circuit breaker's halt lasts: when trading resumes."
    )

    @classmethod
    def from_row(cls, row: MarketLimitsRow) -> MarketRiskLimits:
        def num(value: Decimal | None) -> Decimal | None:
            return None if value is None else plain(value)

        return cls(
            symbol=row.symbol,
            max_order_quantity=num(row.max_order_quantity),
            max_order_notional=num(row.max_order_notional),
            price_band_percent=num(row.price_band_pct),
            circuit_breaker_percent=num(row.breaker_move_pct),
            circuit_breaker_window_seconds=row.breaker_window_seconds,
            circuit_breaker_cooldown_seconds=row.breaker_cooldown_seconds,
            halted_until=row.halted_until,  # type: ignore[arg-type]
        )


@strawberry.input(description="A market's risk settings, all at once; null switches one off.")
class MarketRiskLimitsInput:
    max_order_quantity: Decimal | None = None
    max_order_notional: Decimal | None = None
    price_band_percent: Decimal | None = None
    circuit_breaker_percent: Decimal | None = None
    circuit_breaker_window_seconds: int = 60
    circuit_breaker_cooldown_seconds: int = 300


@strawberry.type
class MarketRiskLimitsPayload:
    limits: MarketRiskLimits | None
    errors: list[UserError]


@strawberry.type(description="A position limit: the default (userId null) or a user's own.")
class PositionLimit:
    user_id: strawberry.ID | None
    asset: str
    max_position: Decimal | None

    @classmethod
    def from_row(cls, row: PositionLimitRow) -> PositionLimit:
        return cls(
            user_id=None if row.user_id is None else strawberry.ID(str(row.user_id)),
            asset=row.asset,
            max_position=None if row.max_position is None else plain(row.max_position),
        )


@strawberry.type
class PositionLimitPayload:
    position_limit: PositionLimit | None
    errors: list[UserError]


@strawberry.type
class TradingSuspensionPayload:
    user_id: strawberry.ID | None
    trading_suspended: bool | None
    errors: list[UserError]


def _error(field: str, message: str) -> list[UserError]:
    return [UserError(code=ErrorCode.INVALID_INPUT, field=field, message=message)]


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


@strawberry.type
class RiskControlQueries:
    @strawberry.field(description="A market's pre-trade limits and circuit breaker.")
    async def market_risk_limits(self, info: Info, symbol: str) -> MarketRiskLimits | None:
        row = await info.context.services.risk_controls.market_limits(symbol)
        return None if row is None else MarketRiskLimits.from_row(row)

    @strawberry.field(
        permission_classes=[IsAdmin],
        description="Admin: the default position limits, and a user's overrides if named.",
    )
    async def position_limits(
        self, info: Info, user_id: strawberry.ID | None = None
    ) -> list[PositionLimit] | None:
        pk = None if user_id is None else parse_id(user_id)
        rows = await info.context.services.risk_controls.position_limits(pk)
        return [PositionLimit.from_row(row) for row in rows]


@strawberry.type
class RiskControlMutations:
    @strawberry.mutation(
        permission_classes=[IsAdmin],
        description="Admin: set a market's order size limits, price band and circuit breaker.",
    )
    async def set_market_risk_limits(
        self, info: Info, symbol: str, input: MarketRiskLimitsInput
    ) -> MarketRiskLimitsPayload | None:
        try:
            command = msgspec.convert(
                {
                    "symbol": symbol,
                    "max_order_quantity": _text(input.max_order_quantity),
                    "max_order_notional": _text(input.max_order_notional),
                    "price_band_pct": _text(input.price_band_percent),
                    "breaker_move_pct": _text(input.circuit_breaker_percent),
                    "breaker_window_seconds": input.circuit_breaker_window_seconds,
                    "breaker_cooldown_seconds": input.circuit_breaker_cooldown_seconds,
                },
                wire.SetMarketLimits,
            )
        except msgspec.ValidationError as exc:
            return MarketRiskLimitsPayload(limits=None, errors=_error("input", str(exc)))
        outcome = await info.context.services.risk_controls.set_market_limits(command)
        if isinstance(outcome, Problem):
            return MarketRiskLimitsPayload(limits=None, errors=user_errors([outcome]))
        return MarketRiskLimitsPayload(limits=MarketRiskLimits.from_row(outcome), errors=[])

    @strawberry.mutation(
        permission_classes=[IsAdmin],
        description="Admin: suspend a user's trading (new orders and amends are refused "
        "RISK_REJECTED; cancels still work; resting orders stay).",
    )
    async def suspend_trading(
        self, info: Info, user_id: strawberry.ID, reason: str = ""
    ) -> TradingSuspensionPayload | None:
        return await _suspend(info, user_id, True, reason)

    @strawberry.mutation(permission_classes=[IsAdmin], description="Admin: end a suspension.")
    async def reinstate_trading(
        self, info: Info, user_id: strawberry.ID
    ) -> TradingSuspensionPayload | None:
        return await _suspend(info, user_id, False, "")

    @strawberry.mutation(
        permission_classes=[IsAdmin],
        description="Admin: the largest position (holding plus open buys) of an asset: the "
        "default without userId, or one user's override; maxPosition null removes it.",
    )
    async def set_position_limit(
        self,
        info: Info,
        asset: str,
        max_position: Decimal | None,
        user_id: strawberry.ID | None = None,
    ) -> PositionLimitPayload | None:
        pk = None
        if user_id is not None:
            pk = parse_id(user_id)
            if pk is None:
                return PositionLimitPayload(
                    position_limit=None, errors=_error("userId", f"no user {user_id!r}")
                )
        if max_position is not None and max_position < 0:
            return PositionLimitPayload(
                position_limit=None, errors=_error("maxPosition", "must not be negative")
            )
        if len(asset) > wire.MAX_ASSET_LENGTH:
            return PositionLimitPayload(position_limit=None, errors=_error("asset", "too long"))
        problem = await info.context.services.risk_controls.set_position_limit(
            pk, asset.upper(), _text(max_position)
        )
        if problem is not None:
            return PositionLimitPayload(position_limit=None, errors=user_errors([problem]))
        return PositionLimitPayload(
            position_limit=PositionLimit(
                user_id=user_id,
                asset=asset.upper(),
                max_position=None if max_position is None else plain(max_position),
            ),
            errors=[],
        )


async def _suspend(
    info: Info, user_id: strawberry.ID, suspended: bool, reason: str
) -> TradingSuspensionPayload:
    pk = parse_id(user_id)
    if pk is None:
        return TradingSuspensionPayload(
            user_id=None, trading_suspended=None, errors=_error("userId", f"no user {user_id!r}")
        )
    if len(reason) > wire.MAX_REASON_LENGTH:
        return TradingSuspensionPayload(
            user_id=None,
            trading_suspended=None,
            errors=_error("reason", f"at most {wire.MAX_REASON_LENGTH} characters"),
        )
    problem = await info.context.services.risk_controls.set_suspension(pk, suspended, reason)
    if problem is not None:
        return TradingSuspensionPayload(
            user_id=None, trading_suspended=None, errors=user_errors([problem])
        )
    return TradingSuspensionPayload(user_id=user_id, trading_suspended=suspended, errors=[])
