"""Commands off the bus into engine commands, and engine events into replies and messages.

On the wire every amount is a decimal string (never a float); inside, integer units.
"""

from __future__ import annotations

import re
from typing import Any

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
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderDuplicate,
    OrderType,
    OrderUpdated,
    PlaceOrder,
    RejectCode,
    ResumeMarket,
    SetFeeTier,
    Side,
    TimeInForce,
    TradeExecuted,
    Withdraw,
    to_units,
)
from engine.events import BalanceChanged, MarketHalted, MarketResumed
from engine.units import show

MAX_REASON_LENGTH = 500
"""A halt reason (``markets.halt_reason`` is TEXT): long enough for an operator's sentence."""
MAX_AMOUNT_TEXT = 40
"""No amount the record holds (DECIMAL(20, 8)) needs more characters than this."""
MAX_BIGINT = 2**63 - 1
"""User and order ids are BIGINT: a larger one could not even be looked up."""
KINDS = frozenset(
    {
        "place",
        "amend",
        "cancel",
        "cancel_all",
        "deposit",
        "withdraw",
        "halt",
        "resume",
        "set_fee_tier",
        "set_kyc",
        "place_batch",
        "cancel_batch",
    }
)
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
    return kind if isinstance(kind, str) and kind in KINDS else UNKNOWN_KIND


def _text(payload: dict[str, Any], name: str, max_length: int, *, required: bool = True) -> str:
    value = payload.get(name)
    if value is None and not required:
        return ""
    if type(value) is not str:
        raise BadCommand(f"{name} must be a string", name)
    if len(value) > max_length:
        raise BadCommand(f"{name} has at most {max_length} characters", name)
    if not storable(value):
        raise BadCommand(f"{name} must not hold a NUL or a character that is not UTF-8", name)
    return value


def _symbol(payload: dict[str, Any], *, required: bool = True) -> str | None:
    value = payload.get("symbol")
    if value is None and not required:
        return None
    if type(value) is not str or not value.isascii() or not _SYMBOL.fullmatch(value.upper()):
        raise BadCommand("symbol must be a market symbol such as BTC-USDT", "symbol")
    return value.upper()


def _asset(payload: dict[str, Any]) -> str:
    asset = payload.get("asset")
    if type(asset) is not str or not asset.isascii() or not _ASSET.fullmatch(asset.upper()):
        raise BadCommand("asset must be an upper-case asset code such as USDT", "asset")
    return asset.upper()


def _units(payload: dict[str, Any], name: str, *, required: bool = True) -> int | None:
    value = payload.get(name)
    if value is None:
        if required:
            raise BadCommand(f"{name} is required", name)
        return None
    if type(value) is int:
        value = str(value)
    if type(value) is not str:
        raise BadCommand(f"{name} must be a decimal string, not {type(value).__name__}", name)
    if len(value) > MAX_AMOUNT_TEXT:
        raise BadCommand(f"{name} has at most {MAX_AMOUNT_TEXT} characters", name)
    try:
        return to_units(value)
    except ValueError as exc:
        raise BadCommand(f"{name}: {printable(str(exc))}", name) from None


def _int(payload: dict[str, Any], name: str, *, low: int = 1, high: int = MAX_BIGINT) -> int:
    value = payload.get(name)
    if type(value) is not int or not low <= value <= high:
        raise BadCommand(f"{name} must be an integer from {low} to {high}", name)
    return value


def _bool(payload: dict[str, Any], name: str) -> bool:
    value = payload.get(name, False)
    if type(value) is not bool:
        raise BadCommand(f"{name} must be true or false", name)
    return value


def _choice(payload: dict[str, Any], name: str, enum: Any, default: Any = None) -> Any:
    value = payload.get(name, default)
    try:
        if type(value) is not str:
            raise ValueError
        return enum(value)
    except ValueError:
        raise BadCommand(
            f"{name} must be one of {', '.join(e.value for e in enum)}", name
        ) from None


def decode(kind: str, payload: dict[str, Any]) -> Command:
    """Build the engine command of ``kind`` from its JSON payload.

    Every field is checked here - type, range, length and characters PostgreSQL can store -
    so that nothing the worker later writes or looks up can be refused by the database.
    """
    match kind:
        case "place":
            return PlaceOrder(
                user_id=_int(payload, "user_id"),
                symbol=_symbol(payload) or "",
                side=_choice(payload, "side", Side),
                type=_choice(payload, "type", OrderType),
                quantity=_units(payload, "quantity") or 0,
                price=_units(payload, "price", required=False),
                time_in_force=_choice(payload, "time_in_force", TimeInForce, "GTC"),
                post_only=_bool(payload, "post_only"),
                client_order_id=_client_order_id(payload),
            )
        case "amend":
            return AmendOrder(
                user_id=_int(payload, "user_id"),
                order_id=_int(payload, "order_id"),
                quantity=_units(payload, "quantity", required=False),
                price=_units(payload, "price", required=False),
            )
        case "cancel":
            order_id = payload.get("order_id")
            return CancelOrder(
                user_id=_int(payload, "user_id"),
                order_id=_int(payload, "order_id") if order_id is not None else None,
                client_order_id=_client_order_id(payload),
            )
        case "cancel_all":
            return CancelAllOrders(_int(payload, "user_id"), _symbol(payload, required=False))
        case "deposit":
            return Deposit(
                _int(payload, "user_id"), _asset(payload), _units(payload, "amount") or 0
            )
        case "withdraw":
            return Withdraw(
                _int(payload, "user_id"), _asset(payload), _units(payload, "amount") or 0
            )
        case "halt":
            return HaltMarket(
                _symbol(payload) or "",
                _text(payload, "reason", MAX_REASON_LENGTH, required=False),
                _bool(payload, "cancel_orders"),
            )
        case "resume":
            return ResumeMarket(_symbol(payload) or "")
        case "set_fee_tier":
            return SetFeeTier(_int(payload, "user_id"), _int(payload, "tier", high=2**31 - 1))
    raise BadCommand(f"unknown command kind {printable(repr(kind)[:80])}")


def _client_order_id(payload: dict[str, Any]) -> str | None:
    """Refused here, not by the orders table's CHECK failing the commit."""
    value = payload.get("client_order_id")
    if value is not None and not (isinstance(value, str) and CLIENT_ORDER_ID.fullmatch(value)):
        raise BadCommand("client_order_id is 1 to 64 letters, digits or . _ : -", "client_order_id")
    return value


def rejected(code: RejectCode | str, message: str, field: str | None = None) -> dict[str, Any]:
    """A refusal as replied and recorded (its text is made storable: it may quote input)."""
    return {
        "ok": False,
        "error": {"code": str(code), "message": printable(message), "field": field},
    }


def trade_json(event: TradeExecuted) -> dict[str, Any]:
    return {
        "id": event.trade_id,
        "symbol": event.symbol,
        "price": show(event.price),
        "quantity": show(event.quantity),
        "quote_quantity": show(event.quote_quantity),
        "taker_side": event.taker_side.value,
        "maker_order_id": event.maker_order_id,
        "taker_order_id": event.taker_order_id,
        "buyer_user_id": event.buyer_user_id,
        "seller_user_id": event.seller_user_id,
        "buyer_order_id": event.buyer_order_id,
        "seller_order_id": event.seller_order_id,
        "buyer_fee": show(event.buyer_fee),
        "seller_fee": show(event.seller_fee),
    }


def reply_for(command: Command, events: list[Event]) -> dict[str, Any]:
    """What the caller of ``command`` is told: the outcome, the order ids and the fills."""
    reply: dict[str, Any] = {"ok": True, "error": None}
    order_ids: list[int] = []
    fills: list[dict[str, Any]] = []
    cancelled: list[int] = []
    for event in events:
        match event:
            case CommandRejected():
                return rejected(event.code, event.message, event.field)
            case BalanceChanged():  # the most frequent event
                if isinstance(command, Deposit | Withdraw):
                    reply["balance"] = {
                        "user_id": event.user_id,
                        "asset": event.asset,
                        "available": show(event.available),
                        "locked": show(event.locked),
                    }
            case OrderAccepted() | OrderAmended():
                if event.order_id not in order_ids:
                    order_ids.append(event.order_id)
            case OrderDuplicate():
                order_ids.append(event.order_id)
                reply["duplicate"] = True
            case TradeExecuted():
                fills.append(trade_json(event))
            case OrderCancelled():
                cancelled.append(event.order_id)
                if isinstance(command, CancelOrder) and event.order_id not in order_ids:
                    order_ids.append(event.order_id)
            case OrderUpdated():
                pass
            case MarketHalted() | MarketResumed():
                reply["symbol"] = event.symbol
    reply["order_id"] = order_ids[0] if order_ids else None
    reply["fills"] = fills
    reply["cancelled"] = cancelled
    return reply
