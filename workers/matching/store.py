"""A batch of engine events as rows, written to PostgreSQL in one statement.

Rows are folded per batch: an order touched by several commands is written once in its
final state, a balance once with its final amounts. The ledger keeps every change.

Each table's rows travel as one JSON document (``json_populate_recordset`` against the
table's own row type): orjson builds it in C and PostgreSQL parses it in C, where binding
arrays costs asyncpg a Python-level check per element and binary ``numeric`` encoding of
``Decimal`` objects. Amounts are exact decimal strings with 8 places.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    OrderUpdated,
    RiskEventRaised,
    TradeExecuted,
)
from engine.units import show

Row = dict[str, Any]

AMOUNT_COLUMNS = ("quantity", "price", "filled_quantity")
"""Order columns the batch keeps in integer units until it writes them."""


def money(units: int | None) -> str | None:
    """Units as an exact decimal string (PostgreSQL reads it as NUMERIC)."""
    return None if units is None else show(units)


def _with_money(row: Row) -> Row:
    row = row.copy()
    for column in AMOUNT_COLUMNS:
        if column in row:
            row[column] = money(row[column])
    return row


def _json(rows: list[Row]) -> str:
    return orjson.dumps(rows).decode()


@dataclass
class Batch:
    new_orders: dict[int, Row] = field(default_factory=dict)
    changed_orders: dict[int, Row] = field(default_factory=dict)
    """Changes to orders stored by an earlier batch; a missing column keeps its value."""
    trades: list[TradeExecuted] = field(default_factory=list)
    balances: dict[tuple[int, str], tuple[int, int]] = field(default_factory=dict)
    ledger: list[Row] = field(default_factory=list)
    risk_events: list[RiskEventRaised] = field(default_factory=list)
    market_status: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    book_sequences: dict[str, int] = field(default_factory=dict)
    fee_tiers: dict[int, int] = field(default_factory=dict)
    kyc_statuses: dict[int, str] = field(default_factory=dict)
    """Admins' KYC decisions (``set_kyc``), the last one per user."""
    processed: list[Row] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    executed_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __bool__(self) -> bool:
        return bool(self.processed)

    def record(
        self, command_id: str, kind: str, user_id: int | None, result: dict[str, Any]
    ) -> None:
        self.results[command_id] = result
        self.processed.append(
            {"command_id": command_id, "kind": kind, "user_id": user_id, "result": result}
        )

    def add(self, command_id: str, events: list[Event]) -> None:
        # Cases in order of frequency: each one is an isinstance check.
        for event in events:
            match event:
                case BalanceChanged():
                    self.balances[event.user_id, event.asset] = (event.available, event.locked)
                    self.ledger.append(
                        {
                            "user_id": event.user_id,
                            "asset": event.asset,
                            "available_delta": money(event.available_delta),
                            "locked_delta": money(event.locked_delta),
                            "reason": event.reason.value,
                            "reference": _reference(event, command_id),
                        }
                    )
                case BookLevelChanged():
                    self.book_sequences[event.symbol] = event.sequence
                case OrderAccepted():
                    self.new_orders[event.order_id] = {
                        "id": event.order_id,
                        "user_id": event.user_id,
                        "symbol": event.symbol,
                        "side": event.side.value,
                        "type": event.type.value,
                        "quantity": event.quantity,
                        "price": event.price,
                        "filled_quantity": 0,
                        "status": "PENDING",
                        "client_order_id": event.client_order_id,
                        "time_in_force": event.time_in_force.value,
                        "post_only": event.post_only,
                        "priority": event.priority,
                        "cancel_reason": None,
                    }
                case OrderCancelled():
                    self._change(
                        event.order_id,
                        {
                            "filled_quantity": event.filled_quantity,
                            "status": "CANCELLED",
                            "cancel_reason": event.reason.value,
                        },
                    )
                case OrderUpdated():
                    self._change(
                        event.order_id,
                        {"filled_quantity": event.filled_quantity, "status": event.status.value},
                    )
                case TradeExecuted():
                    self.trades.append(event)
                case OrderAmended():
                    self._change(
                        event.order_id,
                        {
                            "quantity": event.quantity,
                            "price": event.price,
                            "priority": event.priority,
                        },
                    )
                case RiskEventRaised():
                    self.risk_events.append(event)
                case MarketHalted():
                    self.market_status[event.symbol] = ("HALTED", event.reason or None)
                case MarketResumed():
                    self.market_status[event.symbol] = ("TRADING", None)
                case FeeTierChanged():
                    self.fee_tiers[event.user_id] = event.tier

    def _change(self, order_id: int, values: Row) -> None:
        new = self.new_orders.get(order_id)
        if new is not None:
            new.update(values)
        else:
            self.changed_orders.setdefault(order_id, {"id": order_id}).update(values)

    async def write(self, conn: asyncpg.Connection) -> list[int]:
        """Write every row in one statement (one round trip, one implicit transaction).

        Returns the ids of the new risk events, in order.
        """
        self.executed_at = datetime.now(UTC)
        executed_at = self.executed_at.isoformat()
        trades = [
            {
                "id": e.trade_id,
                "symbol": e.symbol,
                "buyer_order_id": e.buyer_order_id,
                "seller_order_id": e.seller_order_id,
                "quantity": money(e.quantity),
                "price": money(e.price),
                "buyer_fee": money(e.buyer_fee),
                "seller_fee": money(e.seller_fee),
                "buyer_user_id": e.buyer_user_id,
                "seller_user_id": e.seller_user_id,
                "taker_side": e.taker_side.value,
                "executed_at": executed_at,
            }
            for e in self.trades
        ]
        balances = [
            {"user_id": user, "asset": asset, "available": money(a), "locked": money(b)}
            for (user, asset), (a, b) in self.balances.items()
        ]
        risk = [
            {
                "user_id": e.user_id,
                "event_type": e.event_type.value,
                "severity": e.severity.value,
                "description": e.description,
                "metadata": {"order_id": e.order_id, "symbol": e.symbol},
            }
            for e in self.risk_events
        ]
        markets = [
            {
                "symbol": symbol,
                "status": self.market_status.get(symbol, (None, None))[0],
                "halt_reason": self.market_status.get(symbol, (None, None))[1],
                "book_sequence": self.book_sequences.get(symbol),
            }
            for symbol in sorted(set(self.market_status) | set(self.book_sequences))
        ]
        tables = {
            "new_orders": [_with_money(o) for o in self.new_orders.values()],
            "changed_orders": [_with_money(c) for c in self.changed_orders.values()],
            "new_trades": trades,
            "new_balances": balances,
            "new_ledger": self.ledger,
            "new_processed": self.processed,
            "changed_markets": markets,
            "changed_fee_tiers": [{"id": u, "fee_tier": t} for u, t in self.fee_tiers.items()],
            "changed_kyc": [{"id": u, "kyc_status": k} for u, k in self.kyc_statuses.items()],
            "new_risk_events": risk,
        }
        written = {name: rows for name, rows in tables.items() if rows}
        result = await conn.fetch(statement(tuple(written)), *map(_json, written.values()))
        return [row["id"] for row in result]


WRITES = {
    "new_orders": """
    INSERT INTO orders (id, user_id, symbol, side, type, quantity, price, filled_quantity,
        status, client_order_id, time_in_force, post_only, priority, cancel_reason)
    SELECT id, user_id, symbol, side, type, quantity, price, filled_quantity, status,
        client_order_id, time_in_force, post_only, priority, cancel_reason
    FROM json_populate_recordset(NULL::orders, $?::json)""",
    "changed_orders": """
    UPDATE orders o SET
        filled_quantity = COALESCE(u.filled_quantity, o.filled_quantity),
        status = COALESCE(u.status, o.status),
        quantity = COALESCE(u.quantity, o.quantity),
        price = COALESCE(u.price, o.price),
        priority = COALESCE(u.priority, o.priority),
        cancel_reason = COALESCE(u.cancel_reason, o.cancel_reason)
    FROM json_populate_recordset(NULL::orders, $?::json) AS u
    WHERE o.id = u.id""",
    "new_trades": """
    INSERT INTO trades (id, symbol, buyer_order_id, seller_order_id, quantity, price,
        buyer_fee, seller_fee, buyer_user_id, seller_user_id, taker_side, executed_at)
    SELECT id, symbol, buyer_order_id, seller_order_id, quantity, price, buyer_fee,
        seller_fee, buyer_user_id, seller_user_id, taker_side, executed_at
    FROM json_populate_recordset(NULL::trades, $?::json)""",
    "new_balances": """
    INSERT INTO balances (user_id, asset, available, locked)
    SELECT user_id, asset, available, locked
    FROM json_populate_recordset(NULL::balances, $?::json)
    ON CONFLICT (user_id, asset) DO UPDATE
        SET available = EXCLUDED.available, locked = EXCLUDED.locked""",
    "new_ledger": """
    INSERT INTO ledger_entries (user_id, asset, available_delta, locked_delta, reason,
        reference)
    SELECT user_id, asset, available_delta, locked_delta, reason, reference
    FROM json_populate_recordset(NULL::ledger_entries, $?::json)""",
    "new_processed": """
    INSERT INTO processed_commands (command_id, kind, user_id, result)
    SELECT command_id, kind, user_id, result
    FROM json_populate_recordset(NULL::processed_commands, $?::json)""",
    "changed_markets": """
    UPDATE markets m SET
        status = COALESCE(u.status, m.status),
        halt_reason = CASE WHEN u.status IS NULL THEN m.halt_reason ELSE u.halt_reason END,
        book_sequence = COALESCE(u.book_sequence, m.book_sequence)
    FROM json_to_recordset($?::json)
        AS u(symbol varchar, status varchar, halt_reason text, book_sequence bigint)
    WHERE m.symbol = u.symbol""",
    "changed_fee_tiers": """
    UPDATE users SET fee_tier = u.fee_tier, fee_tier_override = true
    FROM json_to_recordset($?::json) AS u(id bigint, fee_tier int)
    WHERE users.id = u.id""",
    "changed_kyc": """
    UPDATE users SET kyc_status = u.kyc_status
    FROM json_to_recordset($?::json) AS u(id bigint, kyc_status varchar)
    WHERE users.id = u.id""",
    "new_risk_events": """
    INSERT INTO risk_events (user_id, event_type, severity, description, metadata)
    SELECT user_id, event_type, severity, description, metadata
    FROM json_populate_recordset(NULL::risk_events, $?::json)
    RETURNING id""",
}
"""One data-modifying CTE per table, each fed one JSON document of rows."""


@functools.cache
def statement(tables: tuple[str, ...]) -> str:
    """The one statement writing ``tables`` (the ones with rows in this batch).

    Leaving out the empty ones matters for small batches: PostgreSQL opens every target
    table and its indexes for each CTE at every execution, rows or not.
    """
    ctes = ",\n".join(
        f"{name} AS ({WRITES[name].replace('$?', f'${n}')}\n)" for n, name in enumerate(tables, 1)
    )
    if "new_risk_events" in tables:
        return f"WITH {ctes}\nSELECT id FROM new_risk_events ORDER BY id"
    return f"WITH {ctes}\nSELECT NULL::bigint AS id WHERE false"


def _reference(event: BalanceChanged, command_id: str) -> str:
    if event.reason in (BalanceReason.DEPOSIT, BalanceReason.WITHDRAWAL):
        return f"command:{command_id}"
    if event.reason in (BalanceReason.TRADE, BalanceReason.FEE):
        return f"trade:{event.reference}"
    return f"order:{event.reference}"
