"""A batch of engine events as rows, written to PostgreSQL in one transaction.

Rows are folded per batch: an order touched by several commands is written once in its
final state, a balance once with its final amounts. The ledger keeps every change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

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
        self.processed.append((command_id, kind, user_id, orjson.dumps(result).decode()))

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
        """Write every row in one statement (one round trip, one implicit transaction).

        Returns the ids of the new risk events, in order.
        """
        orders = list(self.new_orders.values())
        changes = list(self.changed_orders.values())
        trades = self.trades
        balances = list(self.balances)
        ledger = _columns(self.ledger, 6)
        processed = _columns(self.processed, 4)
        risk = self.risk_events
        markets = sorted(set(self.market_status) | set(self.book_sequences))
        self.executed_at = datetime.now(UTC)
        rows = await conn.fetch(
            WRITE_BATCH,
            # $1-$14: new orders
            [o.id for o in orders],
            [o.user_id for o in orders],
            [o.symbol for o in orders],
            [o.side for o in orders],
            [o.type for o in orders],
            [money(o.quantity) for o in orders],
            [money(o.price) for o in orders],
            [money(o.filled) for o in orders],
            [o.status for o in orders],
            [o.client_order_id for o in orders],
            [o.time_in_force for o in orders],
            [o.post_only for o in orders],
            [o.priority for o in orders],
            [o.cancel_reason for o in orders],
            # $15-$21: changed orders
            [c.id for c in changes],
            [money(c.filled) for c in changes],
            [c.status for c in changes],
            [money(c.quantity) for c in changes],
            [money(c.price) for c in changes],
            [c.priority for c in changes],
            [c.cancel_reason for c in changes],
            # $22-$32: trades, $33: their time
            [e.trade_id for e in trades],
            [e.symbol for e in trades],
            [e.buyer_order_id for e in trades],
            [e.seller_order_id for e in trades],
            [money(e.quantity) for e in trades],
            [money(e.price) for e in trades],
            [money(e.buyer_fee) for e in trades],
            [money(e.seller_fee) for e in trades],
            [e.buyer_user_id for e in trades],
            [e.seller_user_id for e in trades],
            [e.taker_side.value for e in trades],
            self.executed_at,
            # $34-$37: balances
            [user for user, _ in balances],
            [asset for _, asset in balances],
            [money(self.balances[k][0]) for k in balances],
            [money(self.balances[k][1]) for k in balances],
            # $38-$43: ledger
            *ledger,
            # $44-$47: processed commands
            *processed,
            # $48-$52: risk events
            [e.user_id for e in risk],
            [e.event_type.value for e in risk],
            [e.severity.value for e in risk],
            [e.description for e in risk],
            [orjson.dumps({"order_id": e.order_id, "symbol": e.symbol}).decode() for e in risk],
            # $53-$56: markets (status, halt reason, book sequence)
            markets,
            [self.market_status.get(m, (None, None))[0] for m in markets],
            [self.market_status.get(m, (None, None))[1] for m in markets],
            [self.book_sequences.get(m) for m in markets],
            # $57-$58: fee tiers
            list(self.fee_tiers),
            list(self.fee_tiers.values()),
        )
        return [row["id"] for row in rows]


WRITE_BATCH = """
WITH new_orders AS (
    INSERT INTO orders (id, user_id, symbol, side, type, quantity, price, filled_quantity,
        status, client_order_id, time_in_force, post_only, priority, cancel_reason)
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::varchar[], $4::varchar[],
        $5::varchar[], $6::numeric[], $7::numeric[], $8::numeric[], $9::varchar[],
        $10::varchar[], $11::varchar[], $12::bool[], $13::bigint[], $14::varchar[])
), changed_orders AS (
    UPDATE orders o SET
        filled_quantity = COALESCE(u.filled, o.filled_quantity),
        status = COALESCE(u.status, o.status),
        quantity = COALESCE(u.quantity, o.quantity),
        price = COALESCE(u.price, o.price),
        priority = COALESCE(u.priority, o.priority),
        cancel_reason = COALESCE(u.cancel_reason, o.cancel_reason)
    FROM unnest($15::bigint[], $16::numeric[], $17::varchar[], $18::numeric[],
        $19::numeric[], $20::bigint[], $21::varchar[])
        AS u(id, filled, status, quantity, price, priority, cancel_reason)
    WHERE o.id = u.id
), new_trades AS (
    INSERT INTO trades (id, symbol, buyer_order_id, seller_order_id, quantity, price,
        buyer_fee, seller_fee, buyer_user_id, seller_user_id, taker_side, executed_at)
    SELECT *, $33::timestamptz FROM unnest($22::bigint[], $23::varchar[], $24::bigint[],
        $25::bigint[], $26::numeric[], $27::numeric[], $28::numeric[], $29::numeric[],
        $30::bigint[], $31::bigint[], $32::varchar[])
), new_balances AS (
    INSERT INTO balances (user_id, asset, available, locked)
    SELECT * FROM unnest($34::bigint[], $35::varchar[], $36::numeric[], $37::numeric[])
    ON CONFLICT (user_id, asset) DO UPDATE
        SET available = EXCLUDED.available, locked = EXCLUDED.locked
), new_ledger AS (
    INSERT INTO ledger_entries (user_id, asset, available_delta, locked_delta, reason,
        reference)
    SELECT * FROM unnest($38::bigint[], $39::varchar[], $40::numeric[], $41::numeric[],
        $42::varchar[], $43::varchar[])
), new_processed AS (
    INSERT INTO processed_commands (command_id, kind, user_id, result)
    SELECT * FROM unnest($44::varchar[], $45::varchar[], $46::bigint[], $47::jsonb[])
), changed_markets AS (
    UPDATE markets m SET
        status = COALESCE(u.status, m.status),
        halt_reason = CASE WHEN u.status IS NULL THEN m.halt_reason ELSE u.reason END,
        book_sequence = COALESCE(u.seq, m.book_sequence)
    FROM unnest($53::varchar[], $54::varchar[], $55::text[], $56::bigint[])
        AS u(symbol, status, reason, seq)
    WHERE m.symbol = u.symbol
), changed_fee_tiers AS (
    UPDATE users SET fee_tier = u.tier, fee_tier_override = true
    FROM unnest($57::bigint[], $58::int[]) AS u(id, tier)
    WHERE users.id = u.id
), new_risk_events AS (
    INSERT INTO risk_events (user_id, event_type, severity, description, metadata)
    SELECT * FROM unnest($48::bigint[], $49::varchar[], $50::varchar[], $51::text[],
        $52::jsonb[])
    RETURNING id
)
SELECT id FROM new_risk_events ORDER BY id
"""


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as ``width`` column lists (the arrays ``unnest`` takes)."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width


def _reference(event: BalanceChanged, command_id: str) -> str:
    if event.reason in (BalanceReason.DEPOSIT, BalanceReason.WITHDRAWAL):
        return f"command:{command_id}"
    if event.reason in (BalanceReason.TRADE, BalanceReason.FEE):
        return f"trade:{event.reference}"
    return f"order:{event.reference}"
