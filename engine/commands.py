"""Commands: what a caller asks the engine to do. Imperative names, frozen values.

Amounts and prices are ``int`` units of 1e-8 (``engine.units.to_units`` converts decimals).
The engine validates every field itself; a bad value is rejected with a code, never fixed.
"""

from dataclasses import dataclass

from engine.enums import OrderType, Side, TimeInForce
from engine.risk import MarketLimits


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    user_id: int
    symbol: str
    side: Side
    type: OrderType
    quantity: int
    price: int | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    client_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class AmendOrder:
    """Change the quantity and/or the price of an open order (``None`` keeps it)."""

    user_id: int
    order_id: int
    quantity: int | None = None
    price: int | None = None


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """Cancel one open order, named by exactly one of ``order_id`` and ``client_order_id``."""

    user_id: int
    order_id: int | None = None
    client_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class CancelAllOrders:
    user_id: int
    symbol: str | None = None


@dataclass(frozen=True, slots=True)
class Deposit:
    user_id: int
    asset: str
    amount: int


@dataclass(frozen=True, slots=True)
class Withdraw:
    user_id: int
    asset: str
    amount: int


@dataclass(frozen=True, slots=True)
class HaltMarket:
    """Stop trading on a market. Resting orders stay unless ``cancel_orders`` is set."""

    symbol: str
    reason: str = ""
    cancel_orders: bool = False


@dataclass(frozen=True, slots=True)
class ResumeMarket:
    symbol: str


@dataclass(frozen=True, slots=True)
class SetFeeTier:
    user_id: int
    tier: int


@dataclass(frozen=True, slots=True)
class Tick:
    """The time (ms since the epoch): trades are dated by the last tick, and markets whose
    circuit breaker halt has run its cool-down resume. The clock never goes back."""

    now_ms: int


@dataclass(frozen=True, slots=True)
class SetMarketLimits:
    symbol: str
    limits: MarketLimits


@dataclass(frozen=True, slots=True)
class SetTradingSuspension:
    user_id: int
    suspended: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SetPositionLimit:
    """``user_id`` None sets the default; ``max_position`` None removes the limit."""

    user_id: int | None
    asset: str
    max_position: int | None


Command = (
    PlaceOrder
    | AmendOrder
    | CancelOrder
    | CancelAllOrders
    | Deposit
    | Withdraw
    | HaltMarket
    | ResumeMarket
    | SetFeeTier
    | Tick
    | SetMarketLimits
    | SetTradingSuspension
    | SetPositionLimit
)
