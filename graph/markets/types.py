from __future__ import annotations

from decimal import Decimal
from enum import Enum

import strawberry

from app.kit.money import plain
from app.markets.cache import MarketInfo


@strawberry.enum(description="Whether a market accepts new orders.")
class MarketStatus(Enum):
    TRADING = "TRADING"
    HALTED = "HALTED"


@strawberry.type(description="A spot market: the grid its orders must sit on, and its status.")
class Market:
    symbol: str = strawberry.field(description="Upper case BASE-QUOTE, e.g. BTC-USDT.")
    base_asset: str
    quote_asset: str
    tick_size: Decimal = strawberry.field(description="Prices are multiples of this.")
    lot_size: Decimal = strawberry.field(description="Quantities are multiples of this.")
    min_notional: Decimal = strawberry.field(
        description="The least price × quantity a limit order may have, in the quote asset."
    )
    status: MarketStatus

    @classmethod
    def from_row(cls, row: MarketInfo) -> Market:
        return cls(
            symbol=row.symbol,
            base_asset=row.base_asset,
            quote_asset=row.quote_asset,
            tick_size=plain(row.tick_size),
            lot_size=plain(row.lot_size),
            min_notional=plain(row.min_notional),
            status=MarketStatus(row.status),
        )
