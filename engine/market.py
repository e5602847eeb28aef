"""Markets and fee tiers: the static configuration the engine is built with."""

from dataclasses import dataclass

from engine.enums import MarketStatus
from engine.units import PPM, SCALE


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """A spot market. Every amount is in 1e-8 units (see ``engine.units``).

    ``tick_size * lot_size`` must be a multiple of ``SCALE`` so that the quote value of any
    order on the grid, ``price * quantity // SCALE``, is exact.
    """

    symbol: str
    base: str
    quote: str
    tick_size: int
    lot_size: int
    min_notional: int = 0
    status: MarketStatus = MarketStatus.TRADING

    def __post_init__(self) -> None:
        if self.symbol != f"{self.base}-{self.quote}" or self.symbol != self.symbol.upper():
            raise ValueError(f"symbol must be upper-case BASE-QUOTE: {self.symbol!r}")
        if self.base == self.quote:
            raise ValueError("base and quote must differ")
        for name in ("tick_size", "lot_size"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if type(self.min_notional) is not int or self.min_notional < 0:
            raise ValueError(f"min_notional must be a non-negative int: {self.min_notional!r}")
        if self.tick_size * self.lot_size % SCALE:
            raise ValueError(
                "tick_size * lot_size must be a multiple of 1e8 units so notionals are exact"
            )
        if self.status not in (MarketStatus.TRADING, MarketStatus.HALTED):
            raise ValueError(f"unknown market status {self.status!r}")


@dataclass(frozen=True, slots=True)
class FeeRates:
    """Maker and taker fee rates in parts per million (0.100 % = 1000)."""

    maker_ppm: int
    taker_ppm: int

    def __post_init__(self) -> None:
        for rate in (self.maker_ppm, self.taker_ppm):
            if type(rate) is not int or not 0 <= rate < PPM:
                raise ValueError(f"fee rate must be an int in [0, {PPM}) ppm, got {rate!r}")


DEFAULT_FEE_TIERS: dict[int, FeeRates] = {
    1: FeeRates(maker_ppm=1000, taker_ppm=1500),
    2: FeeRates(maker_ppm=900, taker_ppm=1350),
    3: FeeRates(maker_ppm=800, taker_ppm=1200),
    4: FeeRates(maker_ppm=600, taker_ppm=1000),
    5: FeeRates(maker_ppm=400, taker_ppm=800),
}
"""The brief's tier table; the worker passes the rows of ``fee_tiers`` instead."""

DEFAULT_TIER = 1
