"""Factories for engine tests: markets, engines with funded accounts, commands, filters."""

from __future__ import annotations

from decimal import Decimal
from typing import TypeVar

from engine import (
    BalanceChanged,
    BalanceState,
    Deposit,
    Engine,
    Event,
    MarketSpec,
    OrderType,
    PlaceOrder,
    Side,
    TimeInForce,
    to_units,
)

FEE_ACCOUNT = 999
BTC = "BTC-USDT"
ETH = "ETH-USDT"

T = TypeVar("T")


def u(amount: str | int) -> int:
    """Decimal text to 1e-8 units: ``u("0.5") == 50_000_000``."""
    return to_units(Decimal(amount))


def btc_usdt(**overrides: object) -> MarketSpec:
    """BTC-USDT: tick 0.01 USDT, lot 0.00001 BTC, minimum order value 10 USDT."""
    fields: dict[str, object] = {
        "symbol": BTC,
        "base": "BTC",
        "quote": "USDT",
        "tick_size": u("0.01"),
        "lot_size": u("0.00001"),
        "min_notional": u("10"),
    }
    fields.update(overrides)
    return MarketSpec(**fields)  # type: ignore[arg-type]


def eth_usdt() -> MarketSpec:
    """ETH-USDT: tick 0.01 USDT, lot 0.0001 ETH, minimum order value 5 USDT."""
    return MarketSpec(ETH, "ETH", "USDT", u("0.01"), u("0.0001"), u("5"))


def create_engine(balances: dict[int, dict[str, str]] | None = None, **kwargs: object) -> Engine:
    """An engine with BTC-USDT and ETH-USDT, and the given balances deposited."""
    engine = Engine([btc_usdt(), eth_usdt()], FEE_ACCOUNT, **kwargs)  # type: ignore[arg-type]
    for user_id, assets in (balances or {}).items():
        for asset, amount in assets.items():
            engine.process(Deposit(user_id, asset, u(amount)))
    return engine


def limit(
    user_id: int,
    side: Side,
    quantity: str,
    price: str,
    symbol: str = BTC,
    *,
    tif: TimeInForce = TimeInForce.GTC,
    post_only: bool = False,
    client_order_id: str | None = None,
) -> PlaceOrder:
    return PlaceOrder(
        user_id,
        symbol,
        side,
        OrderType.LIMIT,
        u(quantity),
        u(price),
        tif,
        post_only,
        client_order_id,
    )


def market(
    user_id: int,
    side: Side,
    quantity: str,
    symbol: str = BTC,
    *,
    tif: TimeInForce = TimeInForce.GTC,
) -> PlaceOrder:
    return PlaceOrder(user_id, symbol, side, OrderType.MARKET, u(quantity), None, tif)


def of_type(events: list[Event], kind: type[T]) -> list[T]:
    return [event for event in events if isinstance(event, kind)]


def only(events: list[Event], kind: type[T]) -> T:
    found = of_type(events, kind)
    assert len(found) == 1, f"expected one {kind.__name__}, got {found}"
    return found[0]


def balances(engine: Engine) -> dict[tuple[int, str], tuple[int, int]]:
    """Every non-empty balance as ``(user, asset) -> (available, locked)``."""
    return {
        (state.user_id, state.asset): (state.available, state.locked)
        for state in engine.snapshot().balances
    }


def ledger_net(events: list[Event]) -> dict[tuple[int, str], tuple[int, int]]:
    """Net (available, locked) change per account and asset over some events."""
    net: dict[tuple[int, str], tuple[int, int]] = {}
    for event in of_type(events, BalanceChanged):
        available, locked = net.get((event.user_id, event.asset), (0, 0))
        net[event.user_id, event.asset] = (
            available + event.available_delta,
            locked + event.locked_delta,
        )
    return net


def balance_state(engine: Engine, user_id: int, asset: str) -> BalanceState:
    available, locked = engine.balance(user_id, asset)
    return BalanceState(user_id, asset, available, locked)
