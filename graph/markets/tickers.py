"""24-hour tickers: the ``ticker`` and ``tickers`` queries and the ``ticker`` subscription.

The figures and their rules are in :mod:`app.markets.tickers`; this maps them.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from decimal import Decimal

import strawberry

from app.kit.money import plain
from app.markets import tickers
from graph.context import Context
from graph.errors import not_found
from graph.markets.queries import require_market
from graph.scalars import SignedDecimal

Info = strawberry.Info[Context, None]


def _amount(value: Decimal | None) -> Decimal | None:
    return plain(value) if value is not None else None


@strawberry.type(
    description=(
        "A market's last 24 hours, a rolling window: trades with "
        "windowStart < executedAt <= windowEnd (windowEnd = now). With no trade in the window "
        "high and low are null, volumes 0 and change 0 (null if the market never traded)."
    )
)
class Ticker:
    symbol: str
    last_price: Decimal | None = strawberry.field(
        description="The latest trade's price, in the window or not; null if none ever."
    )
    open_price: Decimal | None = strawberry.field(
        description="The price 24 h ago (the latest trade at or before windowStart), or "
        "else the first trade's in the window."
    )
    change: SignedDecimal | None = strawberry.field(description="lastPrice - openPrice.")
    change_percent: SignedDecimal | None = strawberry.field(
        description="change / openPrice × 100, rounded half away from zero to 2 decimals."
    )
    high: Decimal | None = strawberry.field(description="The highest trade price in the window.")
    low: Decimal | None = strawberry.field(description="The lowest trade price in the window.")
    base_volume: Decimal = strawberry.field(description="Σ quantity in the window.")
    quote_volume: Decimal = strawberry.field(
        description="Σ price × quantity (each rounded down to 1e-8, as fills are) in the window."
    )
    trade_count: int
    best_bid: Decimal | None = strawberry.field(description="Null when no bid rests.")
    best_bid_quantity: Decimal | None
    best_ask: Decimal | None = strawberry.field(description="Null when no ask rests.")
    best_ask_quantity: Decimal | None
    window_start: datetime
    window_end: datetime

    @classmethod
    def from_ticker(cls, ticker: tickers.Ticker) -> Ticker:
        bid, ask = ticker.best_bid, ticker.best_ask
        return cls(
            symbol=ticker.symbol,
            last_price=_amount(ticker.last_price),
            open_price=_amount(ticker.open_price),
            change=SignedDecimal(plain(ticker.change)) if ticker.change is not None else None,
            change_percent=(
                SignedDecimal(plain(ticker.change_percent))
                if ticker.change_percent is not None
                else None
            ),
            high=_amount(ticker.high),
            low=_amount(ticker.low),
            base_volume=plain(ticker.base_volume),
            quote_volume=plain(ticker.quote_volume),
            trade_count=ticker.trade_count,
            best_bid=_amount(bid.price if bid else None),
            best_bid_quantity=_amount(bid.quantity if bid else None),
            best_ask=_amount(ask.price if ask else None),
            best_ask_quantity=_amount(ask.quantity if ask else None),
            window_start=ticker.window_start,
            window_end=ticker.window_end,
        )


@strawberry.type
class TickerQueries:
    @strawberry.field(description="A market's 24 h ticker; an unknown symbol is NOT_FOUND.")
    async def ticker(self, info: Info, symbol: str) -> Ticker | None:
        symbol = await require_market(info, symbol)
        found = await info.context.services.tickers.ticker(symbol)
        if found is None:
            raise not_found(f"no market {symbol!r}", "symbol")
        return Ticker.from_ticker(found)

    @strawberry.field(description="Every market's 24 h ticker, by symbol.")
    async def tickers(self, info: Info) -> list[Ticker]:
        services = info.context.services
        markets = await services.markets.list()
        found = await services.tickers.tickers([market.symbol for market in markets])
        return [Ticker.from_ticker(ticker) for ticker in found]


@strawberry.type
class TickerSubscriptions:
    @strawberry.subscription(
        description="A market's ticker now, then again after each trade or change of its "
        "best bid or ask: at most one message per 100 ms (the latest figures)."
    )
    async def ticker(self, info: Info, symbol: str) -> AsyncGenerator[Ticker, None]:
        symbol = await require_market(info, symbol)
        async with info.context.services.ticker_feed.subscribe(symbol) as feed:
            async for ticker in feed:
                yield Ticker.from_ticker(ticker)
