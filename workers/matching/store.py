"""A batch of engine events as rows, written to PostgreSQL in one transaction.

Rows are folded per batch: an order touched by several commands is written once in its
final state, a balance once with its final amounts. The ledger keeps every change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from engine import (
    BalanceChanged,
    BalanceReason,
    BookLevelChanged,
    Event,
    FeeTierChanged,
    MarketHalted,
    MarketResumed,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderStatus,
    OrderUpdated,
    RiskEventRaised,
    TradeExecuted,
    from_units,
)


def money(units: int | None) -> Decimal | None:
    return None if units is None else from_units(units)


@dataclass
class NewOrder:
    id: int
    user_id: int
    symbol: str
    side: str
    type: str
    quantity: int
    price: int | None
    filled: int
    status: str
    client_order_id: str | None
    time_in_force: str
    post_only: bool
    priority: int
    cancel_reason: str | None = None


@dataclass
class OrderChange:
    """Changes to an order stored by an earlier batch; ``None`` keeps the stored value."""

    id: int
    filled: int | None = None
    status: str | None = None
    quantity: int | None = None
    price: int | None = None
    priority: int | None = None
    cancel_reason: str | None = None


@dataclass
class Batch:
    new_orders: dict[int, NewOrder] = field(default_factory=dict)
    changed_orders: dict[int, OrderChange] = field(default_factory=dict)
    trades: list[TradeExecuted] = field(default_factory=list)
    balances: dict[tuple[int, str], tuple[int, int]] = field(default_factory=dict)
    ledger: list[tuple[int, str, Decimal, Decimal, str, str]] = field(default_factory=list)
    risk_events: list[RiskEventRaised] = field(default_factory=list)
    market_status: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    book_sequences: dict[str, int] = field(default_factory=dict)
    fee_tiers: dict[int, int] = field(default_factory=dict)
    processed: list[tuple[str, str, int | None, str]] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    executed_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __bool__(self) -> bool:
        return bool(self.processed)

    def record(
        self, command_id: str, kind: str, user_id: int | None, result: dict[str, Any]
    ) -> None:
        self.results[command_id] = result
        self.processed.append((command_id, kind, user_id, json.dumps(result)))

    def add(self, command_id: str, events: list[Event]) -> None:
        for event in events:
            match event:
                case OrderAccepted():
                    self.new_orders[event.order_id] = NewOrder(
                        id=event.order_id,
                        user_id=event.user_id,
                        symbol=event.symbol,
                        side=event.side.value,
                        type=event.type.value,
                        quantity=event.quantity,
                        price=event.price,
                        filled=0,
                        status=OrderStatus.PENDING.value,
                        client_order_id=event.client_order_id,
                        time_in_force=event.time_in_force.value,
                        post_only=event.post_only,
                        priority=event.priority,
                    )
                case OrderUpdated():
                    self._change(event.order_id, filled=event.filled_quantity, status=event.status)
                case OrderCancelled():
                    self._change(
                        event.order_id,
                        filled=event.filled_quantity,
                        status=OrderStatus.CANCELLED.value,
                        cancel_reason=event.reason.value,
                    )
                case OrderAmended():
                    self._change(
                        event.order_id,
                        quantity=event.quantity,
                        price=event.price,
                        priority=event.priority,
                    )
                case TradeExecuted():
                    self.trades.append(event)
                case BalanceChanged():
                    self.balances[event.user_id, event.asset] = (event.available, event.locked)
                    self.ledger.append(
                        (
                            event.user_id,
                            event.asset,
                            from_units(event.available_delta),
                            from_units(event.locked_delta),
                            event.reason.value,
                            _reference(event, command_id),
                        )
                    )
                case BookLevelChanged():
                    self.book_sequences[event.symbol] = event.sequence
                case RiskEventRaised():
                    self.risk_events.append(event)
                case MarketHalted():
                    self.market_status[event.symbol] = ("HALTED", event.reason or None)
                case MarketResumed():
                    self.market_status[event.symbol] = ("TRADING", None)
                case FeeTierChanged():
                    self.fee_tiers[event.user_id] = event.tier

    def _change(self, order_id: int, **values: Any) -> None:
        values = {k: (v.value if hasattr(v, "value") else v) for k, v in values.items()}
        new = self.new_orders.get(order_id)
        if new is not None:
            for name, value in values.items():
                setattr(new, name, value)
            return
        change = self.changed_orders.setdefault(order_id, OrderChange(order_id))
        for name, value in values.items():
            setattr(change, name, value)

    async def write(self, conn: asyncpg.Connection) -> list[int]:
        """Write every row; return the ids of the new risk events (in order)."""
        if self.new_orders:
            rows = list(self.new_orders.values())
            await conn.execute(
                """
                INSERT INTO orders (id, user_id, symbol, side, type, quantity, price,
                    filled_quantity, status, client_order_id, time_in_force, post_only,
                    priority, cancel_reason)
                SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::varchar[], $4::varchar[],
                    $5::varchar[], $6::numeric[], $7::numeric[], $8::numeric[], $9::varchar[],
                    $10::varchar[], $11::varchar[], $12::bool[], $13::bigint[], $14::varchar[])
                """,
                [o.id for o in rows],
                [o.user_id for o in rows],
                [o.symbol for o in rows],
                [o.side for o in rows],
                [o.type for o in rows],
                [money(o.quantity) for o in rows],
                [money(o.price) for o in rows],
                [money(o.filled) for o in rows],
                [o.status for o in rows],
                [o.client_order_id for o in rows],
                [o.time_in_force for o in rows],
                [o.post_only for o in rows],
                [o.priority for o in rows],
                [o.cancel_reason for o in rows],
            )
        if self.changed_orders:
            changes = list(self.changed_orders.values())
            await conn.execute(
                """
                UPDATE orders o SET
                    filled_quantity = COALESCE(u.filled, o.filled_quantity),
                    status = COALESCE(u.status, o.status),
                    quantity = COALESCE(u.quantity, o.quantity),
                    price = COALESCE(u.price, o.price),
                    priority = COALESCE(u.priority, o.priority),
                    cancel_reason = COALESCE(u.cancel_reason, o.cancel_reason)
                FROM unnest($1::bigint[], $2::numeric[], $3::varchar[], $4::numeric[],
                    $5::numeric[], $6::bigint[], $7::varchar[])
                    AS u(id, filled, status, quantity, price, priority, cancel_reason)
                WHERE o.id = u.id
                """,
                [c.id for c in changes],
                [money(c.filled) for c in changes],
                [c.status for c in changes],
                [money(c.quantity) for c in changes],
                [money(c.price) for c in changes],
                [c.priority for c in changes],
                [c.cancel_reason for c in changes],
            )
        if self.trades:
            t = self.trades
            self.executed_at = datetime.now(UTC)
            await conn.execute(
                """
                INSERT INTO trades (id, symbol, buyer_order_id, seller_order_id, quantity, price,
                    buyer_fee, seller_fee, buyer_user_id, seller_user_id, taker_side, executed_at)
                SELECT *, $12::timestamptz FROM unnest($1::bigint[], $2::varchar[], $3::bigint[],
                    $4::bigint[], $5::numeric[], $6::numeric[], $7::numeric[], $8::numeric[],
                    $9::bigint[], $10::bigint[], $11::varchar[])
                """,
                [e.trade_id for e in t],
                [e.symbol for e in t],
                [e.buyer_order_id for e in t],
                [e.seller_order_id for e in t],
                [money(e.quantity) for e in t],
                [money(e.price) for e in t],
                [money(e.buyer_fee) for e in t],
                [money(e.seller_fee) for e in t],
                [e.buyer_user_id for e in t],
                [e.seller_user_id for e in t],
                [e.taker_side.value for e in t],
                self.executed_at,
            )
        if self.balances:
            keys = list(self.balances)
            await conn.execute(
                """
                INSERT INTO balances (user_id, asset, available, locked)
                SELECT * FROM unnest($1::bigint[], $2::varchar[], $3::numeric[], $4::numeric[])
                ON CONFLICT (user_id, asset) DO UPDATE
                    SET available = EXCLUDED.available, locked = EXCLUDED.locked
                """,
                [user for user, _ in keys],
                [asset for _, asset in keys],
                [money(self.balances[k][0]) for k in keys],
                [money(self.balances[k][1]) for k in keys],
            )
        if self.ledger:
            columns = list(zip(*self.ledger, strict=True))
            await conn.execute(
                """
                INSERT INTO ledger_entries (user_id, asset, available_delta, locked_delta,
                    reason, reference)
                SELECT * FROM unnest($1::bigint[], $2::varchar[], $3::numeric[], $4::numeric[],
                    $5::varchar[], $6::varchar[])
                """,
                *map(list, columns),
            )
        risk_ids: list[int] = []
        if self.risk_events:
            r = self.risk_events
            rows = await conn.fetch(
                """
                INSERT INTO risk_events (user_id, event_type, severity, description, metadata)
                SELECT * FROM unnest($1::bigint[], $2::varchar[], $3::varchar[], $4::text[],
                    $5::jsonb[])
                RETURNING id
                """,
                [e.user_id for e in r],
                [e.event_type.value for e in r],
                [e.severity.value for e in r],
                [e.description for e in r],
                [json.dumps({"order_id": e.order_id, "symbol": e.symbol}) for e in r],
            )
            risk_ids = [row["id"] for row in rows]
        for symbol, (status, reason) in self.market_status.items():
            await conn.execute(
                "UPDATE markets SET status = $2, halt_reason = $3 WHERE symbol = $1",
                symbol,
                status,
                reason,
            )
        if self.book_sequences:
            await conn.execute(
                """
                UPDATE markets m SET book_sequence = u.seq
                FROM unnest($1::varchar[], $2::bigint[]) AS u(symbol, seq)
                WHERE m.symbol = u.symbol
                """,
                list(self.book_sequences),
                list(self.book_sequences.values()),
            )
        for user_id, tier in self.fee_tiers.items():
            await conn.execute(
                "UPDATE users SET fee_tier = $2, fee_tier_override = true WHERE id = $1",
                user_id,
                tier,
            )
        if self.processed:
            columns = list(zip(*self.processed, strict=True))
            await conn.execute(
                """
                INSERT INTO processed_commands (command_id, kind, user_id, result)
                SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::bigint[], $4::jsonb[])
                """,
                *map(list, columns),
            )
        return risk_ids


def _reference(event: BalanceChanged, command_id: str) -> str:
    if event.reason in (BalanceReason.DEPOSIT, BalanceReason.WITHDRAWAL):
        return f"command:{command_id}"
    if event.reason in (BalanceReason.TRADE, BalanceReason.FEE):
        return f"trade:{event.reference}"
    return f"order:{event.reference}"
