"""Commands off the bus into engine commands, and engine events into replies.

The shapes are :mod:`app.wire`'s; this is where a stream entry's payload is decoded into
them and checked for what no type says, then turned into the engine's command. On the wire
every amount is a decimal string (never a float); inside, integer units.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

import msgspec

from app import wire
from app.kit.bus import MAX_COMMAND_ID_LENGTH
from app.kit.db import storable
from engine import (
    CLIENT_ORDER_ID,
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    Command,
    CommandRejected,
    Deposit,
    Event,
    HaltMarket,
    MarketLimits,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderDuplicate,
    PlaceOrder,
    RejectCode,
    ResumeMarket,
    SetFeeTier,
    SetMarketLimits,
    SetPositionLimit,
    SetTradingSuspension,
    Withdraw,
    to_units,
)
from engine.events import BalanceChanged, MarketHalted, MarketResumed

UNKNOWN_KIND = "unknown"
"""What ``processed_commands.kind`` (VARCHAR(32)) records for a kind that is none of these."""

_SYMBOL = re.compile(  # BASE-QUOTE, at most 20 characters as the symbol columns
    r"[A-Z0-9]{1,9}-[A-Z0-9]{1,10}", re.ASCII
)
_ASSET = re.compile(r"[A-Z0-9]{1,20}", re.ASCII)


class BadCommand(ValueError):
    """The payload could not be read as a command; replied to as INVALID_INPUT."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def printable(text: str) -> str:
    """``text`` made storable (for messages that quote what a caller sent)."""
    if storable(text):
        return text
    return text.replace("\x00", "\\0").encode(errors="backslashreplace").decode()


def command_id_problem(command_id: object) -> str | None:
    """Why ``command_id`` cannot be stored or looked up in ``processed_commands``, if so."""
    if type(command_id) is not str:
        return "the command id must be a string"
    if not 0 < len(command_id) <= MAX_COMMAND_ID_LENGTH:
        return f"the command id has 1 to {MAX_COMMAND_ID_LENGTH} characters"
    if not storable(command_id):
        return "the command id holds a NUL or a character that is not UTF-8"
    return None


def recorded_kind(kind: object) -> str:
    """The kind written to ``processed_commands``: a known one, or ``unknown``."""
    return kind if isinstance(kind, str) and kind in wire.KINDS else UNKNOWN_KIND


_PATH = re.compile(r"at `\$\.?([^`]*)`")
_MISSING = re.compile(r"missing required field `([^`]+)`")


def _refusal(exc: msgspec.ValidationError) -> BadCommand:
    """msgspec's message names the field at fault by its path (``at `$.entries[0].price```);
    a missing field is named in the message itself."""
    message = str(exc)
    path = _PATH.search(message)
    field = path.group(1) if path and path.group(1) else None
    if missing := _MISSING.search(message):
        field = f"{field}.{missing.group(1)}" if field else missing.group(1)
    return BadCommand(printable(message), field)


def read(kind: str, payload: str | bytes) -> wire.Command:
    """The typed command of ``kind`` from its JSON payload: types, ranges and lengths are
    checked as it is decoded (:mod:`app.wire`)."""
    if kind not in wire.KINDS:
        raise BadCommand(f"unknown command kind {printable(repr(kind)[:80])}")
    try:
        return wire.decode_command(kind, payload)
    except msgspec.ValidationError as exc:
        raise _refusal(exc) from None
    except msgspec.DecodeError as exc:
        raise BadCommand(f"the payload is not JSON: {exc}") from None


def decode(kind: str, payload: str | bytes) -> Command:
    """Build the engine command of ``kind`` from its JSON payload.

    Every field is checked - type, range and length by the wire's types, then characters
    PostgreSQL can store, symbols, assets and amounts here - so that nothing the worker
    later writes or looks up can be refused by the database.
    """
    return engine_command(read(kind, payload))


def order_command(user_id: int, entry: wire.OrderEntry) -> PlaceOrder:
    """One order (a ``place`` or an entry of a ``place_batch``) as the engine's command."""
    return PlaceOrder(
        user_id=user_id,
        symbol=_symbol(entry.symbol),
        side=entry.side,
        type=entry.type,
        quantity=_units(entry.quantity, "quantity"),
        price=None if entry.price is None else _units(entry.price, "price"),
        time_in_force=entry.time_in_force,
        post_only=entry.post_only,
        client_order_id=_client_order_id(entry.client_order_id),
    )


def cancel_command(user_id: int, entry: wire.CancelEntry) -> CancelOrder:
    """One cancel (a ``cancel`` or an entry of a ``cancel_batch``) as the engine's command."""
    return CancelOrder(
        user_id=user_id,
        order_id=entry.order_id,
        client_order_id=_client_order_id(entry.client_order_id),
    )


def engine_command(command: wire.Command) -> Command:
    """The engine's command for a typed one, with the checks no type expresses."""
    match command:
        case wire.Place():
            return order_command(command.user_id, command)
        case wire.Amend():
            return AmendOrder(
                user_id=command.user_id,
                order_id=command.order_id,
                quantity=None if command.quantity is None else _units(command.quantity, "quantity"),
                price=None if command.price is None else _units(command.price, "price"),
            )
        case wire.Cancel():
            return cancel_command(command.user_id, command)
        case wire.CancelAll():
            symbol = None if command.symbol is None else _symbol(command.symbol)
            return CancelAllOrders(command.user_id, symbol)
        case wire.Deposit():
            return Deposit(command.user_id, _asset(command.asset), _units(command.amount, "amount"))
        case wire.Withdraw():
            return Withdraw(
                command.user_id, _asset(command.asset), _units(command.amount, "amount")
            )
        case wire.Halt():
            return HaltMarket(
                _symbol(command.symbol), _text(command.reason, "reason"), command.cancel_orders
            )
        case wire.Resume():
            return ResumeMarket(_symbol(command.symbol))
        case wire.SetFeeTier() if command.tier is not None:
            return SetFeeTier(command.user_id, command.tier)
        case wire.SetMarketLimits():
            return SetMarketLimits(_symbol(command.symbol), market_limits(command))
        case wire.SetTradingSuspension():
            return SetTradingSuspension(
                command.user_id, command.suspended, _text(command.reason, "reason")
            )
        case wire.SetPositionLimit():
            limit = (
                None
                if command.max_position is None
                else _units(command.max_position, "max_position")
            )
            return SetPositionLimit(command.user_id, _asset(command.asset), limit)
    raise BadCommand(f"the worker does not handle {wire.kind_of(command)} commands yet")


def market_limits(command: wire.SetMarketLimits) -> MarketLimits:
    def amount(value: str | None, name: str) -> int | None:
        if value is None:
            return None
        units = _units(value, name)
        if units <= 0:
            raise BadCommand(f"{name} must be positive", name)
        return units

    return MarketLimits(
        max_order_quantity=amount(command.max_order_quantity, "max_order_quantity"),
        max_order_notional=amount(command.max_order_notional, "max_order_notional"),
        price_band_ppm=_percent_ppm(command.price_band_pct, "price_band_pct"),
        breaker_move_ppm=_percent_ppm(command.breaker_move_pct, "breaker_move_pct"),
        breaker_window_ms=command.breaker_window_seconds * 1000,
        breaker_cooldown_ms=command.breaker_cooldown_seconds * 1000,
    )


def _percent_ppm(value: str | None, name: str) -> int | None:
    """``"10"`` -> 100_000 ppm; at most 4 decimals, above 0 and below 100."""
    if value is None:
        return None
    try:
        number = Decimal(value)
    except (InvalidOperation, ValueError):
        raise BadCommand(f"{name} must be a percentage such as 10 or 2.5", name) from None
    if not number.is_finite() or not 0 < number < 100:
        raise BadCommand(f"{name} must be above 0 and below 100", name)
    ppm = number * 10_000
    if ppm != ppm.to_integral_value():
        raise BadCommand(f"{name} has more than 4 decimals", name)
    return int(ppm)


def _text(value: str, name: str) -> str:
    if not storable(value):
        raise BadCommand(f"{name} must not hold a NUL or a character that is not UTF-8", name)
    return value


def _symbol(value: str) -> str:
    if not value.isascii() or not _SYMBOL.fullmatch(value.upper()):
        raise BadCommand("symbol must be a market symbol such as BTC-USDT", "symbol")
    return value.upper()


def _asset(value: str) -> str:
    if not value.isascii() or not _ASSET.fullmatch(value.upper()):
        raise BadCommand("asset must be an upper-case asset code such as USDT", "asset")
    return value.upper()


def _units(value: str, name: str) -> int:
    try:
        return to_units(value)
    except ValueError as exc:
        raise BadCommand(f"{name}: {printable(str(exc))}", name) from None


def _client_order_id(value: str | None) -> str | None:
    """Refused here, not by the orders table's CHECK failing the commit."""
    if value is not None and not CLIENT_ORDER_ID.fullmatch(value):
        raise BadCommand("client_order_id is 1 to 64 letters, digits or . _ : -", "client_order_id")
    return value


def rejected(code: RejectCode | str, message: str, field: str | None = None) -> wire.Reply:
    """A refusal as replied and recorded (its text is made storable: it may quote input)."""
    return wire.refusal(str(code), printable(message), field)


def reply_for(
    command: Command,
    events: list[Event],
    changes: Sequence[wire.StoredOrder] = (),
    fills: Sequence[wire.Trade] = (),
) -> wire.Reply:
    """What the caller of ``command`` is told: the outcome, the order as stored after it,
    the fills as stored, the ids cancelled.

    ``changes`` and ``fills`` are the rows the batch built from ``events``
    (:class:`workers.matching.store.Batch`): the reply shows what is committed.
    """
    reply = wire.Reply(fills=list(fills))
    order_id: int | None = None
    for event in events:
        match event:
            case CommandRejected():
                return rejected(event.code, event.message, event.field)
            case BalanceChanged():  # the most frequent event
                if isinstance(command, Deposit | Withdraw):
                    reply.balance = wire.BalanceRow(
                        user_id=event.user_id,
                        asset=event.asset,
                        available=wire.amount_text(event.available),
                        locked=wire.amount_text(event.locked),
                    )
            case OrderAccepted() | OrderAmended():
                if order_id is None:
                    order_id = event.order_id
            case OrderDuplicate():
                order_id = event.order_id
                reply.duplicate = True
            case OrderCancelled():
                reply.cancelled.append(event.order_id)
                if isinstance(command, CancelOrder) and order_id is None:
                    order_id = event.order_id
            case MarketHalted() | MarketResumed():
                reply.symbol = event.symbol
    if order_id is not None:
        reply.order_id = order_id
        for order in reversed(changes):
            if order.id == order_id:
                reply.order = order
                break
    return reply
