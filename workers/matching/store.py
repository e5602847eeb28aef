"""A batch of engine events as rows, written to PostgreSQL in one statement.

Rows are folded per batch: an order touched by several commands is written once in its
final state, a balance once with its final amounts. The ledger keeps every change.

Each table's rows travel as one JSON document (``json_populate_recordset`` against the
table's own row type): msgspec builds it in C and PostgreSQL parses it in C, where binding
arrays costs asyncpg a Python-level check per element and binary ``numeric`` encoding of
``Decimal`` objects. Amounts are exact decimal strings.

What the callers and subscribers are shown is built here too, from the same events, so it
is what is stored: each order's row after each change (:class:`app.wire.StoredOrder`, kept
for every open order in :data:`OpenOrders`), each trade's row (:class:`app.wire.Trade`), and
the per-user events. The batch's timestamp is chosen when the batch is matched, and written
as the orders' ``created_at``/``updated_at`` and the trades' ``executed_at``, so a reply can
say them before the commit.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import asyncpg
import msgspec
from msgspec.structs import replace

from app import wire
from engine import (
    BalanceChanged,
    BalanceReason,
    BookLevelChanged,
    Event,
    MarketHalted,
    MarketLimits,
    MarketLimitsChanged,
    MarketResumed,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderStatus,
    OrderUpdated,
    PositionLimitChanged,
    RiskEventRaised,
    Side,
    TradeExecuted,
    TradingSuspensionChanged,
)

if TYPE_CHECKING:
    from workers.matching.fees import FeeBook, FeeRow

Row = dict[str, Any]
amount = wire.amount_text

AMOUNT_COLUMNS = ("quantity", "price", "filled_quantity")
"""Order columns the batch keeps in integer units until it writes them."""


def money(units: int | None) -> str | None:
    """Units as an exact decimal string (PostgreSQL reads it as NUMERIC)."""
    return None if units is None else wire.amount_text(units)


def _with_money(row: Row) -> Row:
    row = row.copy()
    for column in AMOUNT_COLUMNS:
        if column in row:
            row[column] = money(row[column])
    return row


_encoder = msgspec.json.Encoder()

OpenOrders = dict[int, wire.StoredOrder]
"""The stored row of every open order, by id: what a cancel, an amend or a fill of it shows."""


def _json(rows: list[Any]) -> str:
    return _encoder.encode(rows).decode()


_last_at = datetime.min.replace(tzinfo=UTC)


def batch_time() -> datetime:
    """Now, but strictly later than the previous batch's: an order changed by two batches
    gets two different ``updated_at`` (the orders trigger keeps an explicit new one)."""
    global _last_at
    now = datetime.now(UTC)
    _last_at = now if now > _last_at else _last_at + timedelta(microseconds=1)
    return _last_at


def trade_row(event: TradeExecuted, executed_at: datetime) -> wire.Trade:
    """A trade as stored (the ``trades`` row, with the engine's maker/taker order ids)."""
    return wire.Trade(
        id=event.trade_id,
        symbol=event.symbol,
        price=amount(event.price),
        quantity=amount(event.quantity),
        quote_quantity=amount(event.quote_quantity),
        taker_side=event.taker_side,
        maker_order_id=event.maker_order_id,
        taker_order_id=event.taker_order_id,
        buyer_user_id=event.buyer_user_id,
        seller_user_id=event.seller_user_id,
        buyer_order_id=event.buyer_order_id,
        seller_order_id=event.seller_order_id,
        buyer_fee=amount(event.buyer_fee),
        seller_fee=amount(event.seller_fee),
        executed_at=executed_at,
    )


_OPEN_ORDERS = """
SELECT COALESCE(json_agg(json_build_object(
    'id', id, 'user_id', user_id, 'symbol', symbol, 'side', side, 'type', type,
    'time_in_force', time_in_force, 'post_only', post_only,
    'quantity', trim_scale(quantity)::text, 'price', trim_scale(price)::text,
    'filled_quantity', trim_scale(filled_quantity)::text, 'status', status,
    'client_order_id', client_order_id, 'cancel_reason', cancel_reason,
    'created_at', created_at, 'updated_at', updated_at)), '[]')
FROM orders WHERE status IN ('PENDING', 'PARTIAL')
"""
_open_orders = msgspec.json.Decoder(list[wire.StoredOrder])


async def load_open_orders(conn: asyncpg.Connection) -> OpenOrders:
    """The rows of the open orders (the ones the engine is restored with).

    PostgreSQL writes them as one JSON document (amounts without trailing zeros, as the
    wire spells them) and msgspec reads it in C; the worker runs this query while it
    restores the engine, so PostgreSQL's part overlaps with the restore's Python."""
    orders = _open_orders.decode(await conn.fetchval(_OPEN_ORDERS))
    return {order.id: order for order in orders}


@dataclass
class Batch:
    new_orders: dict[int, Row] = field(default_factory=dict)
    changed_orders: dict[int, Row] = field(default_factory=dict)
    """Changes to orders stored by an earlier batch; a missing column keeps its value."""
    open_orders: OpenOrders = field(default_factory=dict)
    """The worker's rows of open orders: updated as events are added (shared by batches)."""
    trades: list[wire.Trade] = field(default_factory=list)
    balances: dict[tuple[int, str], tuple[int, int]] = field(default_factory=dict)
    ledger: list[Row] = field(default_factory=list)
    risk_events: list[RiskEventRaised] = field(default_factory=list)
    market_status: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    halted_until: dict[str, datetime | None] = field(default_factory=dict)
    """With each status change: when a circuit breaker's halt ends (None otherwise)."""
    market_limits: dict[str, MarketLimits] = field(default_factory=dict)
    suspensions: dict[int, tuple[bool, str]] = field(default_factory=dict)
    position_limits: dict[tuple[int | None, str], int | None] = field(default_factory=dict)
    book_sequences: dict[str, int] = field(default_factory=dict)
    fee_tiers: dict[int, FeeRow] = field(default_factory=dict)
    """Fee tier changes (``users`` rows), the last one per user."""
    fees: FeeBook | None = None
    """The worker's volumes: each trade adds to both sides' (shared by batches)."""
    kyc_statuses: dict[int, str] = field(default_factory=dict)
    """Admins' KYC decisions (``set_kyc``), the last one per user."""
    processed: list[Row] = field(default_factory=list)
    results: dict[str, wire.Reply] = field(default_factory=dict)
    changes: list[wire.StoredOrder] = field(default_factory=list)
    """Each order's row after each change, in order (a command's replies read its own)."""
    user_events: dict[int, list[wire.OrderEvent | wire.FillEvent]] = field(default_factory=dict)
    executed_at: datetime = field(default_factory=batch_time)
    """The batch's time: the orders' created_at/updated_at and the trades' executed_at."""

    def __bool__(self) -> bool:
        # A tick alone (a breaker's halt ending) changes a market without a command.
        return bool(self.processed or self.market_status or self.risk_events)

    def record(self, command_id: str, kind: str, user_id: int | None, result: wire.Reply) -> None:
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
                    self._accepted(event)
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
                        "created_at": self.executed_at,
                        "updated_at": self.executed_at,
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
                    old = self.open_orders.pop(event.order_id, None)
                    if old is not None:
                        self._show(
                            "cancelled",
                            replace(
                                old,
                                filled_quantity=amount(event.filled_quantity),
                                status=OrderStatus.CANCELLED,
                                cancel_reason=event.reason,
                                updated_at=self.executed_at,
                            ),
                        )
                case OrderUpdated():
                    self._change(
                        event.order_id,
                        {"filled_quantity": event.filled_quantity, "status": event.status.value},
                    )
                    old = self.open_orders.get(event.order_id)
                    if old is not None:
                        order = replace(
                            old,
                            filled_quantity=amount(event.filled_quantity),
                            status=event.status,
                            updated_at=self.executed_at,
                        )
                        if event.status is OrderStatus.FILLED:
                            del self.open_orders[event.order_id]
                        else:
                            self.open_orders[event.order_id] = order
                        self._show("updated", order)
                case TradeExecuted():
                    trade = trade_row(event, self.executed_at)
                    self.trades.append(trade)
                    self._event(event.buyer_user_id, wire.FillEvent(side=Side.BUY, trade=trade))
                    self._event(event.seller_user_id, wire.FillEvent(side=Side.SELL, trade=trade))
                    if self.fees is not None:
                        self.fees.traded(
                            event.buyer_user_id, event.seller_user_id, event.quote_quantity
                        )
                case OrderAmended():
                    self._change(
                        event.order_id,
                        {
                            "quantity": event.quantity,
                            "price": event.price,
                            "priority": event.priority,
                        },
                    )
                    old = self.open_orders.get(event.order_id)
                    if old is not None:
                        order = replace(
                            old,
                            quantity=amount(event.quantity),
                            price=amount(event.price),
                            updated_at=self.executed_at,
                        )
                        self.open_orders[event.order_id] = order
                        self._show("amended", order)
                case RiskEventRaised():
                    self.risk_events.append(event)
                case MarketHalted():
                    self.market_status[event.symbol] = ("HALTED", event.reason or None)
                    self.halted_until[event.symbol] = (
                        None if event.until_ms is None else moment(event.until_ms)
                    )
                case MarketResumed():
                    self.market_status[event.symbol] = ("TRADING", None)
                    self.halted_until[event.symbol] = None
                case MarketLimitsChanged():
                    self.market_limits[event.symbol] = event.limits
                case TradingSuspensionChanged():
                    self.suspensions[event.user_id] = (event.suspended, event.reason)
                case PositionLimitChanged():
                    self.position_limits[event.user_id, event.asset] = event.max_position

    def fee_tier(self, row: FeeRow) -> None:
        """A fee tier change for ``users``; merged with an earlier one of the batch."""
        earlier = self.fee_tiers.get(row["id"])  # type: ignore[call-overload]
        if earlier is None:
            self.fee_tiers[row["id"]] = dict(row)  # type: ignore[index]
        else:
            earlier.update((key, value) for key, value in row.items() if value is not None)

    def _accepted(self, event: OrderAccepted) -> None:
        order = wire.StoredOrder(
            id=event.order_id,
            user_id=event.user_id,
            symbol=event.symbol,
            side=event.side,
            type=event.type,
            time_in_force=event.time_in_force,
            post_only=event.post_only,
            quantity=amount(event.quantity),
            price=None if event.price is None else amount(event.price),
            filled_quantity="0",
            status=OrderStatus.PENDING,
            client_order_id=event.client_order_id,
            cancel_reason=None,
            created_at=self.executed_at,
            updated_at=self.executed_at,
        )
        self.open_orders[event.order_id] = order
        self._show("accepted", order)

    def _show(self, change: wire.OrderChange, order: wire.StoredOrder) -> None:
        self.changes.append(order)
        self._event(order.user_id, wire.OrderEvent(event=change, order=order))

    def _event(self, user_id: int, event: wire.OrderEvent | wire.FillEvent) -> None:
        events = self.user_events.get(user_id)
        if events is None:
            self.user_events[user_id] = [event]
        else:
            events.append(event)

    def _change(self, order_id: int, values: Row) -> None:
        new = self.new_orders.get(order_id)
        if new is not None:
            new.update(values)
        else:
            row = self.changed_orders.get(order_id)
            if row is None:
                row = self.changed_orders[order_id] = {
                    "id": order_id,
                    "updated_at": self.executed_at,
                }
            row.update(values)

    async def write(self, conn: asyncpg.Connection) -> list[int]:
        """Write every row in one statement (one round trip, one implicit transaction).

        Returns the ids of the new risk events, in order.
        """
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
                "metadata": risk_metadata(e),
            }
            for e in self.risk_events
        ]
        markets = [
            {
                "symbol": symbol,
                "status": self.market_status.get(symbol, (None, None))[0],
                "halt_reason": self.market_status.get(symbol, (None, None))[1],
                "halted_until": self.halted_until.get(symbol),
                "book_sequence": self.book_sequences.get(symbol),
            }
            for symbol in sorted(set(self.market_status) | set(self.book_sequences))
        ]
        tables: dict[str, list[Any]] = {
            "new_orders": [_with_money(o) for o in self.new_orders.values()],
            "changed_orders": [_with_money(c) for c in self.changed_orders.values()],
            "new_trades": self.trades,  # the columns are read by name; the rest is ignored
            "new_balances": balances,
            "new_ledger": self.ledger,
            "new_processed": self.processed,
            "changed_markets": markets,
            "changed_fee_tiers": list(self.fee_tiers.values()),
            "changed_kyc": [{"id": u, "kyc_status": k} for u, k in self.kyc_statuses.items()],
            "new_risk_events": risk,
            "changed_market_limits": [
                market_limits_row(symbol, limits) for symbol, limits in self.market_limits.items()
            ],
            "changed_suspensions": [
                {"id": user_id, "trading_suspended": on, "suspension_reason": reason or None}
                for user_id, (on, reason) in self.suspensions.items()
            ],
            "changed_position_limits": [
                {"user_id": user_id, "asset": asset, "max_position": money(limit)}
                for (user_id, asset), limit in self.position_limits.items()
            ],
        }
        written = {name: rows for name, rows in tables.items() if rows}
        result = await conn.fetch(statement(tuple(written)), *map(_json, written.values()))
        return [row["id"] for row in result]


WRITES = {
    "new_orders": """
    INSERT INTO orders (id, user_id, symbol, side, type, quantity, price, filled_quantity,
        status, client_order_id, time_in_force, post_only, priority, cancel_reason,
        created_at, updated_at)
    SELECT id, user_id, symbol, side, type, quantity, price, filled_quantity, status,
        client_order_id, time_in_force, post_only, priority, cancel_reason, created_at,
        updated_at
    FROM json_populate_recordset(NULL::orders, $?::json)""",
    "changed_orders": """
    UPDATE orders o SET
        filled_quantity = COALESCE(u.filled_quantity, o.filled_quantity),
        status = COALESCE(u.status, o.status),
        quantity = COALESCE(u.quantity, o.quantity),
        price = COALESCE(u.price, o.price),
        priority = COALESCE(u.priority, o.priority),
        cancel_reason = COALESCE(u.cancel_reason, o.cancel_reason),
        updated_at = COALESCE(u.updated_at, o.updated_at)
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
        halted_until = CASE WHEN u.status IS NULL THEN m.halted_until ELSE u.halted_until END,
        book_sequence = COALESCE(u.book_sequence, m.book_sequence)
    FROM json_to_recordset($?::json)
        AS u(symbol varchar, status varchar, halt_reason text, halted_until timestamptz,
             book_sequence bigint)
    WHERE m.symbol = u.symbol""",
    "changed_market_limits": """
    UPDATE markets m SET
        max_order_quantity = u.max_order_quantity,
        max_order_notional = u.max_order_notional,
        price_band_pct = u.price_band_pct,
        breaker_move_pct = u.breaker_move_pct,
        breaker_window_seconds = u.breaker_window_seconds,
        breaker_cooldown_seconds = u.breaker_cooldown_seconds
    FROM json_to_recordset($?::json)
        AS u(symbol varchar, max_order_quantity numeric, max_order_notional numeric,
             price_band_pct numeric, breaker_move_pct numeric, breaker_window_seconds int,
             breaker_cooldown_seconds int)
    WHERE m.symbol = u.symbol""",
    "changed_suspensions": """
    UPDATE users SET trading_suspended = u.trading_suspended,
        suspension_reason = u.suspension_reason
    FROM json_to_recordset($?::json)
        AS u(id bigint, trading_suspended boolean, suspension_reason text)
    WHERE users.id = u.id""",
    "changed_position_limits": """
    INSERT INTO position_limits (user_id, asset, max_position)
    SELECT user_id, asset, max_position
    FROM json_to_recordset($?::json) AS u(user_id bigint, asset varchar, max_position numeric)
    ON CONFLICT ((COALESCE(user_id, 0)), asset)
        DO UPDATE SET max_position = EXCLUDED.max_position""",
    "changed_fee_tiers": """
    UPDATE users SET
        fee_tier = u.fee_tier,
        fee_tier_override = COALESCE(u.fee_tier_override, users.fee_tier_override),
        fee_volume_30d = COALESCE(u.fee_volume_30d, users.fee_volume_30d)
    FROM json_to_recordset($?::json)
        AS u(id bigint, fee_tier int, fee_tier_override boolean, fee_volume_30d numeric)
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

CANDLES = """
    INSERT INTO candles_1m AS c (symbol, bucket, open, high, low, close, volume,
        quote_volume, trades, first_trade_id, last_trade_id)
    SELECT symbol, date_bin('1 minute', executed_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
        (array_agg(price ORDER BY id))[1], max(price), min(price),
        (array_agg(price ORDER BY id DESC))[1], sum(quantity),
        sum(trunc(price * quantity, 8)), count(*), min(id), max(id)
    FROM json_populate_recordset(NULL::trades, $?::json)
    GROUP BY 1, 2
    ON CONFLICT (symbol, bucket) DO UPDATE SET
        open = CASE WHEN EXCLUDED.first_trade_id < c.first_trade_id
                    THEN EXCLUDED.open ELSE c.open END,
        high = GREATEST(c.high, EXCLUDED.high),
        low = LEAST(c.low, EXCLUDED.low),
        close = CASE WHEN EXCLUDED.last_trade_id > c.last_trade_id
                     THEN EXCLUDED.close ELSE c.close END,
        volume = c.volume + EXCLUDED.volume,
        quote_volume = c.quote_volume + EXCLUDED.quote_volume,
        trades = c.trades + EXCLUDED.trades,
        first_trade_id = LEAST(c.first_trade_id, EXCLUDED.first_trade_id),
        last_trade_id = GREATEST(c.last_trade_id, EXCLUDED.last_trade_id)"""
"""The batch's trades folded into ``candles_1m`` (migration 0011), one row per market and
minute: fed the trades' own JSON document, so the candles are built by PostgreSQL from
exactly the rows inserted, in the same statement and commit (docs/adr/0013-candles.md)."""


@functools.cache
def statement(tables: tuple[str, ...]) -> str:
    """The one statement writing ``tables`` (the ones with rows in this batch), and the
    candles of its trades.

    Leaving out the empty ones matters for small batches: PostgreSQL opens every target
    table and its indexes for each CTE at every execution, rows or not.
    """
    writes = [(name, WRITES[name], n) for n, name in enumerate(tables, 1)]
    if "new_trades" in tables:
        writes.append(("new_candles", CANDLES, tables.index("new_trades") + 1))
    ctes = ",\n".join(f"{name} AS ({sql.replace('$?', f'${n}')}\n)" for name, sql, n in writes)
    if "new_risk_events" in tables:
        return f"WITH {ctes}\nSELECT id FROM new_risk_events ORDER BY id"
    return f"WITH {ctes}\nSELECT NULL::bigint AS id WHERE false"


def moment(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def risk_metadata(event: RiskEventRaised) -> dict[str, Any]:
    """What a risk event saw: its rule, order and market, and the rule's details."""
    metadata: dict[str, Any] = {"rule": event.rule}
    if event.order_id is not None:
        metadata["order_id"] = event.order_id
    if event.symbol is not None:
        metadata["symbol"] = event.symbol
    metadata.update(event.details)
    return metadata


def market_limits_row(symbol: str, limits: MarketLimits) -> dict[str, Any]:
    def pct(ppm: int | None) -> str | None:
        return None if ppm is None else str(Decimal(ppm) / 10_000)

    return {
        "symbol": symbol,
        "max_order_quantity": money(limits.max_order_quantity),
        "max_order_notional": money(limits.max_order_notional),
        "price_band_pct": pct(limits.price_band_ppm),
        "breaker_move_pct": pct(limits.breaker_move_ppm),
        "breaker_window_seconds": limits.breaker_window_ms // 1000,
        "breaker_cooldown_seconds": limits.breaker_cooldown_ms // 1000,
    }


def _reference(event: BalanceChanged, command_id: str) -> str:
    if event.reason in (BalanceReason.DEPOSIT, BalanceReason.WITHDRAWAL):
        return f"command:{command_id}"
    if event.reason in (BalanceReason.TRADE, BalanceReason.FEE):
        return f"trade:{event.reference}"
    return f"order:{event.reference}"
