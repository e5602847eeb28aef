"""The engine's vocabularies. ``str`` enums whose values are the database's values."""

from enum import StrEnum


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    PARTIAL = "PARTIAL"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"


class MarketStatus(StrEnum):
    TRADING = "TRADING"
    HALTED = "HALTED"


class RejectCode(StrEnum):
    """Why a command changed nothing. The API maps these onto its error codes."""

    INVALID_INPUT = "INVALID_INPUT"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    MARKET_HALTED = "MARKET_HALTED"
    RISK_REJECTED = "RISK_REJECTED"
    POST_ONLY_WOULD_TAKE = "POST_ONLY_WOULD_TAKE"
    NOT_FOUND = "NOT_FOUND"
    ORDER_NOT_OPEN = "ORDER_NOT_OPEN"
    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"


class CancelReason(StrEnum):
    USER = "USER"
    IOC = "IOC"
    FOK = "FOK"
    MARKET = "MARKET"
    SELF_TRADE = "SELF_TRADE"
    HALT = "HALT"


class BalanceReason(StrEnum):
    """Ledger reasons; ``reference`` on the event is named after the reason."""

    DEPOSIT = "DEPOSIT"
    WITHDRAWAL = "WITHDRAWAL"
    ORDER_LOCK = "ORDER_LOCK"
    ORDER_UNLOCK = "ORDER_UNLOCK"
    TRADE = "TRADE"
    FEE = "FEE"


class RiskEventType(StrEnum):
    """The seed's ``risk_events.event_type`` values."""

    WITHDRAWAL = "WITHDRAWAL"
    DEPOSIT = "DEPOSIT"
    TRADE = "TRADE"
    LOGIN = "LOGIN"
    SUSPICIOUS_ACTIVITY = "SUSPICIOUS_ACTIVITY"


class RiskSeverity(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"
