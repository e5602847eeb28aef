"""TradeGraph's matching engine: a pure, deterministic core (no I/O, no asyncio).

Drive it with commands and store the events it returns::

    engine = Engine(markets, fee_account_id=FEE_ACCOUNT)
    events = engine.process(PlaceOrder(user_id, "BTC-USDT", Side.BUY, OrderType.LIMIT, ...))

Amounts and prices are ``int`` units of 1e-8 (``to_units``/``from_units`` at the edges).

``COMPILED`` says whether this process runs the mypyc-compiled modules or the pure-Python
source (``BUILD`` says why); ``engine.native`` explains the choice.
"""

# First: it decides where the modules imported below come from (compiled or source).
from engine.native import BUILD, COMPILED

# isort: split
from engine.accounts import Balance
from engine.commands import (
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    Command,
    Deposit,
    HaltMarket,
    PlaceOrder,
    ResumeMarket,
    SetFeeTier,
    SetMarketLimits,
    SetPositionLimit,
    SetTradingSuspension,
    Tick,
    Withdraw,
)
from engine.engine import CLIENT_ORDER_ID, MAX_CLIENT_ORDER_ID_LENGTH, Engine
from engine.enums import (
    BalanceReason,
    CancelReason,
    MarketStatus,
    OrderStatus,
    OrderType,
    RejectCode,
    RiskEventType,
    RiskSeverity,
    Side,
    TimeInForce,
)
from engine.events import (
    BalanceChanged,
    BookLevelChanged,
    CommandRejected,
    Event,
    FeeTierChanged,
    MarketHalted,
    MarketLimitsChanged,
    MarketResumed,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderDuplicate,
    OrderRejected,
    OrderUpdated,
    PositionLimitChanged,
    RiskEventRaised,
    TradeExecuted,
    TradingSuspensionChanged,
)
from engine.market import DEFAULT_FEE_TIERS, DEFAULT_TIER, FeeRates, MarketSpec
from engine.risk import NO_LIMITS, MarketLimits, PriceWatch
from engine.snapshot import BalanceState, EngineSnapshot, RestingOrderState
from engine.units import PPM, SCALE, fee_for, from_units, notional, to_units

__all__ = [
    "BUILD",
    "CLIENT_ORDER_ID",
    "COMPILED",
    "DEFAULT_FEE_TIERS",
    "DEFAULT_TIER",
    "MAX_CLIENT_ORDER_ID_LENGTH",
    "NO_LIMITS",
    "PPM",
    "SCALE",
    "AmendOrder",
    "Balance",
    "BalanceChanged",
    "BalanceReason",
    "BalanceState",
    "BookLevelChanged",
    "CancelAllOrders",
    "CancelOrder",
    "CancelReason",
    "Command",
    "CommandRejected",
    "Deposit",
    "Engine",
    "EngineSnapshot",
    "Event",
    "FeeRates",
    "FeeTierChanged",
    "HaltMarket",
    "MarketHalted",
    "MarketLimits",
    "MarketLimitsChanged",
    "MarketResumed",
    "MarketSpec",
    "MarketStatus",
    "OrderAccepted",
    "OrderAmended",
    "OrderCancelled",
    "OrderDuplicate",
    "OrderRejected",
    "OrderStatus",
    "OrderType",
    "OrderUpdated",
    "PlaceOrder",
    "PositionLimitChanged",
    "PriceWatch",
    "RejectCode",
    "RestingOrderState",
    "ResumeMarket",
    "RiskEventRaised",
    "RiskEventType",
    "RiskSeverity",
    "SetFeeTier",
    "SetMarketLimits",
    "SetPositionLimit",
    "SetTradingSuspension",
    "Side",
    "Tick",
    "TimeInForce",
    "TradeExecuted",
    "TradingSuspensionChanged",
    "Withdraw",
    "fee_for",
    "from_units",
    "notional",
    "to_units",
]
