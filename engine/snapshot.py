"""The engine's state as plain data, so the worker can rebuild it from PostgreSQL rows.

``Engine.snapshot()`` produces an ``EngineSnapshot``; ``Engine.restore(snapshot)`` rebuilds an
engine that behaves exactly like the one the snapshot was taken from. The worker builds one
from its tables instead:

- ``orders``: every open order (status PENDING or PARTIAL) as a ``RestingOrderState``. The
  queue within a price level follows ``priority``; store the ``priority`` of OrderAccepted /
  OrderAmended with the order (it is the order id unless an amend moved the order back).
- ``balances``: the ``balances`` rows.
- ``client_order_ids``: ``(user_id, client_order_id) -> order id`` for every stored order that
  has one, so a repeated place stays idempotent after a restart.
- ``next_order_id``: greater than every order id and every priority ever handed out
  (``max(max(orders.id), max(orders.priority)) + 1``); ``next_trade_id``: ``max(trades.id) + 1``.
- ``book_sequences``: the last BookLevelChanged sequence per symbol.
- risk: ``market_limits`` (the ``markets`` columns), ``halted_until`` (breaker halts),
  ``last_prices`` (the last trade per market), ``position_limits`` (the default row per
  asset), ``user_position_limits`` (the users' rows), ``suspended_users``.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from engine.enums import Side
from engine.market import DEFAULT_FEE_TIERS, FeeRates, MarketSpec
from engine.risk import MarketLimits
from engine.units import notional


@dataclass(slots=True, init=False, unsafe_hash=True)
class RestingOrderState:
    """An open limit order. ``filled_quantity`` < ``quantity``; it is always GTC.

    Treat it as immutable. Its ``__init__`` is written out, as the events' are (see
    ``engine.events``): a restart builds one per open order, 100,000 and more."""

    order_id: int
    user_id: int
    symbol: str
    side: Side
    price: int
    quantity: int
    filled_quantity: int
    priority: int
    post_only: bool
    client_order_id: str | None

    def __init__(
        self,
        order_id: int,
        user_id: int,
        symbol: str,
        side: Side,
        price: int,
        quantity: int,
        filled_quantity: int,
        priority: int,
        post_only: bool = False,
        client_order_id: str | None = None,
    ) -> None:
        self.order_id = order_id
        self.user_id = user_id
        self.symbol = symbol
        self.side = side
        self.price = price
        self.quantity = quantity
        self.filled_quantity = filled_quantity
        self.priority = priority
        self.post_only = post_only
        self.client_order_id = client_order_id

    @property
    def remaining(self) -> int:
        return self.quantity - self.filled_quantity

    @property
    def reserved(self) -> int:
        """What the order holds locked: quote for a BUY, base for a SELL."""
        if self.side is Side.BUY:
            return notional(self.price, self.remaining)
        return self.remaining


@dataclass(frozen=True, slots=True)
class BalanceState:
    user_id: int
    asset: str
    available: int
    locked: int


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    markets: Sequence[MarketSpec]
    fee_account_id: int
    balances: Sequence[BalanceState] = ()
    orders: Sequence[RestingOrderState] = ()
    fee_tiers: Mapping[int, FeeRates] = field(default_factory=lambda: dict(DEFAULT_FEE_TIERS))
    user_fee_tiers: Mapping[int, int] = field(default_factory=dict)
    client_order_ids: Mapping[tuple[int, str], int] = field(default_factory=dict)
    next_order_id: int = 1
    next_trade_id: int = 1
    book_sequences: Mapping[str, int] = field(default_factory=dict)
    max_open_orders_per_user: int | None = None
    market_limits: Mapping[str, MarketLimits] = field(default_factory=dict)
    halted_until: Mapping[str, int] = field(default_factory=dict)
    """Markets halted by their circuit breaker: when the halt ends (ms)."""
    last_prices: Mapping[str, int] = field(default_factory=dict)
    """Each market's last trade price (the price band's reference)."""
    position_limits: Mapping[str, int] = field(default_factory=dict)
    user_position_limits: Mapping[tuple[int, str], int] = field(default_factory=dict)
    suspended_users: Mapping[int, str] = field(default_factory=dict)
    """Users whose trading is suspended, with the admin's reason."""
    now_ms: int = 0
