"""Events: what happened. Past-tense names; one command yields a list of them.

The events of a command are complete: the matching worker writes every database row
(orders, trades, balances, ledger entries, risk events) and every Redis book-cache update
from them alone.

Events are declared frozen for the type checker. At run time they are plain slotted
dataclasses, because the frozen ``__init__`` (one ``object.__setattr__`` per field) made
building them four times slower, and the engine builds several per command; see
docs/adr/0006-engine-hot-path.md. Treat them as immutable.
"""

from dataclasses import dataclass
from typing import TypeVar, dataclass_transform

from engine.enums import (
    BalanceReason,
    CancelReason,
    OrderStatus,
    OrderType,
    RejectCode,
    RiskEventType,
    RiskSeverity,
    Side,
    TimeInForce,
)

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True)
def _event(cls: type[_T]) -> type[_T]:
    return dataclass(slots=True, unsafe_hash=True)(cls)


@_event
class OrderAccepted:
    """A new order passed every check; it is stored as ``PENDING``.

    ``reserved`` is what was moved from available to locked (0 for a market BUY, which
    spends available quote directly). ``priority`` orders the queue within a price level;
    store it to rebuild the queues on restore.
    """

    order_id: int
    user_id: int
    symbol: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    quantity: int
    price: int | None
    post_only: bool
    client_order_id: str | None
    reserved: int
    priority: int


@_event
class CommandRejected:
    """The command changed nothing. ``field`` names the offending input, if one."""

    code: RejectCode
    message: str
    field: str | None = None


OrderRejected = CommandRejected
"""The name the issue uses; every rejection (orders, withdrawals, …) is this one event."""


@_event
class OrderDuplicate:
    """A place repeated a client order id: nothing happened; answer with the original."""

    order_id: int
    user_id: int
    client_order_id: str


@_event
class TradeExecuted:
    """A fill at the maker's price. ``quote_quantity`` is ``price * quantity // SCALE``.

    The buyer's fee is in the base asset, the seller's in the quote asset; ``taker_side``
    gives the liquidity side (the maker is the other side).
    """

    trade_id: int
    symbol: str
    price: int
    quantity: int
    quote_quantity: int
    taker_side: Side
    maker_order_id: int
    taker_order_id: int
    buyer_user_id: int
    seller_user_id: int
    buyer_order_id: int
    seller_order_id: int
    buyer_fee: int
    seller_fee: int


@_event
class OrderUpdated:
    """An order's fills changed: ``PARTIAL`` or ``FILLED``."""

    order_id: int
    user_id: int
    symbol: str
    filled_quantity: int
    status: OrderStatus


@_event
class OrderCancelled:
    """An order left the book or its remainder was not kept; its status is ``CANCELLED``."""

    order_id: int
    user_id: int
    symbol: str
    filled_quantity: int
    reason: CancelReason


@_event
class OrderAmended:
    """An open order's quantity and/or price changed; ``reserved`` is its new lock.

    ``kept_priority`` is true when only the quantity went down; otherwise the order moved
    to the back of its (new) level with the new ``priority``. A crossing price is matched
    like a new taker order; the trades and updates follow this event.
    """

    order_id: int
    user_id: int
    symbol: str
    quantity: int
    price: int
    reserved: int
    priority: int
    kept_priority: bool


@_event
class BalanceChanged:
    """One ledger entry. ``available`` and ``locked`` are the balances after the change.

    ``reference`` is the order id for ORDER_LOCK / ORDER_UNLOCK, the trade id for TRADE / FEE
    and ``None`` for DEPOSIT / WITHDRAWAL (the caller knows its command).
    """

    user_id: int
    asset: str
    available_delta: int
    locked_delta: int
    available: int
    locked: int
    reason: BalanceReason
    reference: int | None


@_event
class BookLevelChanged:
    """The aggregated quantity at one price level; 0 means the level is gone.

    ``sequence`` is contiguous per symbol across every BookLevelChanged of that symbol.
    """

    symbol: str
    side: Side
    price: int
    quantity: int
    order_count: int
    sequence: int


@_event
class MarketHalted:
    symbol: str
    reason: str


@_event
class MarketResumed:
    symbol: str


@_event
class FeeTierChanged:
    user_id: int
    tier: int
    maker_ppm: int
    taker_ppm: int


@_event
class RiskEventRaised:
    """A risk event to store in ``risk_events`` (``order_id``/``symbol`` go to metadata)."""

    user_id: int
    event_type: RiskEventType
    severity: RiskSeverity
    description: str
    order_id: int | None = None
    symbol: str | None = None


Event = (
    OrderAccepted
    | CommandRejected
    | OrderDuplicate
    | TradeExecuted
    | OrderUpdated
    | OrderCancelled
    | OrderAmended
    | BalanceChanged
    | BookLevelChanged
    | MarketHalted
    | MarketResumed
    | FeeTierChanged
    | RiskEventRaised
)
