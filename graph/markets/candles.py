"""Candles (OHLCV): the ``candles`` query and the ``candles`` subscription."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from decimal import Decimal
from typing import Annotated

import strawberry

from app.markets import candles
from app.markets.candles import CandleRequestError
from graph.context import Context
from graph.errors import invalid_input
from graph.markets.queries import require_market

Info = strawberry.Info[Context, None]

CandleInterval = candles.CandleInterval
strawberry.enum(
    CandleInterval,
    name="CandleInterval",
    description="A candle's length: M1 (1 minute), M5, M15, H1, H4, D1 (UTC days).",
)


@strawberry.type(
    description="Open, high, low, close and volume of a market over one interval. An "
    "interval without trades is flat at the previous close, with volume 0 and 0 trades."
)
class Candle:
    symbol: str
    interval: CandleInterval
    start: datetime = strawberry.field(description="The interval's start (included), UTC.")
    end: datetime = strawberry.field(description="The interval's end (excluded), UTC.")
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = strawberry.field(description="Base asset traded.")
    quote_volume: Decimal = strawberry.field(
        description="Quote asset traded: each trade's price × quantity (to 8 decimals), summed."
    )
    trades: int = strawberry.field(description="How many trades.")

    @classmethod
    def from_candle(cls, candle: candles.Candle) -> Candle:
        return cls(
            symbol=candle.symbol,
            interval=candle.interval,
            start=candle.start,
            end=candle.end,
            open=candle.open,
            high=candle.high,
            low=candle.low,
            close=candle.close,
            volume=candle.volume,
            quote_volume=candle.quote_volume,
            trades=candle.trades,
        )


@strawberry.type
class CandleQueries:
    @strawberry.field(
        description="A market's candles, oldest first: every interval overlapping "
        "[from, to) (`to` defaults to now; the current candle is the open one), none before "
        f"the market's first trade. Without `from`: the `first` (default "
        f"{candles.DEFAULT_CANDLES}) most recent. With `from`: at most "
        f"{candles.MAX_CANDLES} candles in the range, the earliest `first` of them. A bad "
        "range is an INVALID_INPUT error, an unknown symbol NOT_FOUND."
    )
    async def candles(
        self,
        info: Info,
        symbol: str,
        interval: CandleInterval,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None,
        first: int | None = None,
    ) -> list[Candle]:
        symbol = await require_market(info, symbol)
        try:
            found = await info.context.services.candles.candles(symbol, interval, from_, to, first)
        except CandleRequestError as refusal:
            raise invalid_input(str(refusal), refusal.argument) from None
        return [Candle.from_candle(candle) for candle in found]


@strawberry.type
class CandleSubscriptions:
    @strawberry.subscription(
        description="A market's open candle: now (once the market has traded), again after "
        "each of its trades, and a new empty one at each interval's end. A trade heard just "
        "after a boundary may update the candle before, which is sent again."
    )
    async def candles(
        self, info: Info, symbol: str, interval: CandleInterval
    ) -> AsyncGenerator[Candle, None]:
        symbol = await require_market(info, symbol)
        services = info.context.services
        async for candle in services.candles.live(services.broadcast, symbol, interval):
            yield Candle.from_candle(candle)
