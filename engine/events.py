"""Events: what happened. Past-tense names; one command yields a list of them.

The events of a command are complete: the matching worker writes every database row
(orders, trades, balances, ledger entries, risk events) and every Redis book-cache update
from them alone.

Treat events as immutable. They are slotted dataclasses (equality, ``repr``, ``hash``,
``dataclasses.replace`` and pattern matching as usual) with a hand-written ``__init__``:
the engine builds several per command, and a generated ``__init__`` is interpreted even
when the engine is compiled (mypyc keeps the one ``dataclasses`` writes), ten times slower
than a compiled one; a frozen one is slower still. See docs/adr/0006-engine-hot-path.md.
"""

from dataclasses import dataclass

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
from engine.risk import MarketLimits


@dataclass(slots=True, init=False, unsafe_hash=True)
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

    def __init__(
        self,
        order_id: int,
        user_id: int,
        symbol: str,
        side: Side,
        type: OrderType,
        time_in_force: TimeInForce,
        quantity: int,
        price: int | None,
        post_only: bool,
        client_order_id: str | None,
        reserved: int,
        priority: int,
    ) -> None:
        self.order_id = order_id
        self.user_id = user_id
        self.symbol = symbol
        self.side = side
        self.type = type
        self.time_in_force = time_in_force
        self.quantity = quantity
        self.price = price
        self.post_only = post_only
        self.client_order_id = client_order_id
        self.reserved = reserved
        self.priority = priority


@dataclass(slots=True, init=False, unsafe_hash=True)
class CommandRejected:
    """The command changed nothing. ``field`` names the offending input, if one."""

    code: RejectCode
    message: str
    field: str | None = None
    rule: str | None = None
    """For RISK_REJECTED: the risk rule that refused it (price_band, position_limit,
    order_size, trading_suspended, open_orders)."""

    def __init__(
        self,
        code: RejectCode,
        message: str,
        field: str | None = None,
        rule: str | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.field = field
        self.rule = rule


OrderRejected = CommandRejected
"""The name the issue uses; every rejection (orders, withdrawals, …) is this one event."""


@dataclass(slots=True, init=False, unsafe_hash=True)
class OrderDuplicate:
    """A place repeated a client order id: nothing happened; answer with the original."""

    order_id: int
    user_id: int
    client_order_id: str

    def __init__(self, order_id: int, user_id: int, client_order_id: str) -> None:
        self.order_id = order_id
        self.user_id = user_id
        self.client_order_id = client_order_id


@dataclass(slots=True, init=False, unsafe_hash=True)
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

    def __init__(
        self,
        trade_id: int,
        symbol: str,
        price: int,
        quantity: int,
        quote_quantity: int,
        taker_side: Side,
        maker_order_id: int,
        taker_order_id: int,
        buyer_user_id: int,
        seller_user_id: int,
        buyer_order_id: int,
        seller_order_id: int,
        buyer_fee: int,
        seller_fee: int,
    ) -> None:
        self.trade_id = trade_id
        self.symbol = symbol
        self.price = price
        self.quantity = quantity
        self.quote_quantity = quote_quantity
        self.taker_side = taker_side
        self.maker_order_id = maker_order_id
        self.taker_order_id = taker_order_id
        self.buyer_user_id = buyer_user_id
        self.seller_user_id = seller_user_id
        self.buyer_order_id = buyer_order_id
        self.seller_order_id = seller_order_id
        self.buyer_fee = buyer_fee
        self.seller_fee = seller_fee


@dataclass(slots=True, init=False, unsafe_hash=True)
class OrderUpdated:
    """An order's fills changed: ``PARTIAL`` or ``FILLED``."""

    order_id: int
    user_id: int
    symbol: str
    filled_quantity: int
    status: OrderStatus

    def __init__(
        self, order_id: int, user_id: int, symbol: str, filled_quantity: int, status: OrderStatus
    ) -> None:
        self.order_id = order_id
        self.user_id = user_id
        self.symbol = symbol
        self.filled_quantity = filled_quantity
        self.status = status


@dataclass(slots=True, init=False, unsafe_hash=True)
class OrderCancelled:
    """An order left the book or its remainder was not kept; its status is ``CANCELLED``."""

    order_id: int
    user_id: int
    symbol: str
    filled_quantity: int
    reason: CancelReason

    def __init__(
        self, order_id: int, user_id: int, symbol: str, filled_quantity: int, reason: CancelReason
    ) -> None:
        self.order_id = order_id
        self.user_id = user_id
        self.symbol = symbol
        self.filled_quantity = filled_quantity
        self.reason = reason


@dataclass(slots=True, init=False, unsafe_hash=True)
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

    def __init__(
        self,
        order_id: int,
        user_id: int,
        symbol: str,
        quantity: int,
        price: int,
        reserved: int,
        priority: int,
        kept_priority: bool,
    ) -> None:
        self.order_id = order_id
        self.user_id = user_id
        self.symbol = symbol
        self.quantity = quantity
        self.price = price
        self.reserved = reserved
        self.priority = priority
        self.kept_priority = kept_priority


@dataclass(slots=True, init=False, unsafe_hash=True)
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

    def __init__(
        self,
        user_id: int,
        asset: str,
        available_delta: int,
        locked_delta: int,
        available: int,
        locked: int,
        reason: BalanceReason,
        reference: int | None,
    ) -> None:
        self.user_id = user_id
        self.asset = asset
        self.available_delta = available_delta
        self.locked_delta = locked_delta
        self.available = available
        self.locked = locked
        self.reason = reason
        self.reference = reference


@dataclass(slots=True, init=False, unsafe_hash=True)
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

    def __init__(
        self, symbol: str, side: Side, price: int, quantity: int, order_count: int, sequence: int
    ) -> None:
        self.symbol = symbol
        self.side = side
        self.price = price
        self.quantity = quantity
        self.order_count = order_count
        self.sequence = sequence


@dataclass(slots=True, init=False, unsafe_hash=True)
class MarketHalted:
    """Trading stopped. ``until_ms``: a circuit breaker's halt resumes by itself then;
    ``None`` for an admin's halt, which lasts until an admin resumes the market."""

    symbol: str
    reason: str
    until_ms: int | None = None

    def __init__(self, symbol: str, reason: str, until_ms: int | None = None) -> None:
        self.symbol = symbol
        self.reason = reason
        self.until_ms = until_ms


@dataclass(slots=True, init=False, unsafe_hash=True)
class MarketResumed:
    """Trading resumed: by an admin, or by itself after a breaker's cool-down."""

    symbol: str
    automatic: bool = False

    def __init__(self, symbol: str, automatic: bool = False) -> None:
        self.symbol = symbol
        self.automatic = automatic


@dataclass(slots=True, init=False, unsafe_hash=True)
class MarketLimitsChanged:
    symbol: str
    limits: MarketLimits

    def __init__(self, symbol: str, limits: MarketLimits) -> None:
        self.symbol = symbol
        self.limits = limits


@dataclass(slots=True, init=False, unsafe_hash=True)
class TradingSuspensionChanged:
    """An admin suspended (or reinstated) a user's trading: places and amends are refused,
    cancels still work."""

    user_id: int
    suspended: bool
    reason: str

    def __init__(self, user_id: int, suspended: bool, reason: str) -> None:
        self.user_id = user_id
        self.suspended = suspended
        self.reason = reason


@dataclass(slots=True, init=False, unsafe_hash=True)
class PositionLimitChanged:
    """The largest position of ``asset``: the default (``user_id`` None) or one user's
    override; ``max_position`` None removes it."""

    user_id: int | None
    asset: str
    max_position: int | None

    def __init__(self, user_id: int | None, asset: str, max_position: int | None) -> None:
        self.user_id = user_id
        self.asset = asset
        self.max_position = max_position


@dataclass(slots=True, init=False, unsafe_hash=True)
class FeeTierChanged:
    user_id: int
    tier: int
    maker_ppm: int
    taker_ppm: int

    def __init__(self, user_id: int, tier: int, maker_ppm: int, taker_ppm: int) -> None:
        self.user_id = user_id
        self.tier = tier
        self.maker_ppm = maker_ppm
        self.taker_ppm = taker_ppm


@dataclass(slots=True, init=False, unsafe_hash=True)
class RiskEventRaised:
    """A risk event to store in ``risk_events``: ``order_id``, ``symbol``, ``rule`` and
    ``details`` (name/value pairs of what was seen) go to its metadata. ``user_id`` is None
    for an event about a market (a circuit breaker)."""

    user_id: int | None
    event_type: RiskEventType
    severity: RiskSeverity
    description: str
    order_id: int | None = None
    symbol: str | None = None
    rule: str = "self_trade"
    details: tuple[tuple[str, str | int], ...] = ()

    def __init__(
        self,
        user_id: int | None,
        event_type: RiskEventType,
        severity: RiskSeverity,
        description: str,
        order_id: int | None = None,
        symbol: str | None = None,
        rule: str = "self_trade",
        details: tuple[tuple[str, str | int], ...] = (),
    ) -> None:
        self.user_id = user_id
        self.event_type = event_type
        self.severity = severity
        self.description = description
        self.order_id = order_id
        self.symbol = symbol
        self.rule = rule
        self.details = details


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
    | MarketLimitsChanged
    | TradingSuspensionChanged
    | PositionLimitChanged
)
