"""Commands off the bus into engine commands, and engine events into replies and messages.

On the wire every amount is a decimal string (never a float); inside, integer units.
"""

from __future__ import annotations

from typing import Any

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


class BadCommand(ValueError):
    """The payload could not be read as a command; replied to as INVALID_INPUT."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _units(payload: dict[str, Any], name: str, *, required: bool = True) -> int | None:
    value = payload.get(name)
    if value is None:
        if required:
            raise BadCommand(f"{name} is required", name)
        return None
    if isinstance(value, float | bool):
        raise BadCommand(f"{name} must be a decimal string, not {type(value).__name__}", name)
    try:
        return to_units(str(value))
    except ValueError as exc:
        raise BadCommand(f"{name}: {exc}", name) from None


def _int(payload: dict[str, Any], name: str) -> int:
    value = payload.get(name)
    if type(value) is not int:
        raise BadCommand(f"{name} must be an integer", name)
    return value


def _choice(payload: dict[str, Any], name: str, enum: Any, default: Any = None) -> Any:
    value = payload.get(name, default)
    try:
        return enum(value)
    except ValueError:
        raise BadCommand(
            f"{name} must be one of {', '.join(e.value for e in enum)}", name
        ) from None


def decode(kind: str, payload: dict[str, Any]) -> Command:
    """Build the engine command of ``kind`` from its JSON payload."""
    match kind:
        case "place":
            return PlaceOrder(
                user_id=_int(payload, "user_id"),
                symbol=str(payload.get("symbol", "")).upper(),
                side=_choice(payload, "side", Side),
                type=_choice(payload, "type", OrderType),
                quantity=_units(payload, "quantity") or 0,
                price=_units(payload, "price", required=False),
                time_in_force=_choice(payload, "time_in_force", TimeInForce, "GTC"),
                post_only=bool(payload.get("post_only", False)),
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
            symbol = payload.get("symbol")
            return CancelAllOrders(_int(payload, "user_id"), symbol.upper() if symbol else None)
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
                str(payload.get("symbol", "")).upper(),
                str(payload.get("reason", "")),
                bool(payload.get("cancel_orders", False)),
            )
        case "resume":
            return ResumeMarket(str(payload.get("symbol", "")).upper())
        case "set_fee_tier":
            return SetFeeTier(_int(payload, "user_id"), _int(payload, "tier"))
    raise BadCommand(f"unknown command kind {kind!r}")


def _client_order_id(payload: dict[str, Any]) -> str | None:
    """Refused here, not by the orders table's CHECK failing the commit."""
    value = payload.get("client_order_id")
    if value is not None and not (isinstance(value, str) and CLIENT_ORDER_ID.fullmatch(value)):
        raise BadCommand("client_order_id is 1 to 64 letters, digits or . _ : -", "client_order_id")
    return value


def _asset(payload: dict[str, Any]) -> str:
    asset = payload.get("asset")
    if not isinstance(asset, str) or not asset.isalnum() or len(asset) > 20:
        raise BadCommand("asset must be an upper-case asset code such as USDT", "asset")
    return asset.upper()


def rejected(code: RejectCode | str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"ok": False, "error": {"code": str(code), "message": message, "field": field}}


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
