"""Pre-trade limits and the circuit breaker's price window: per-market risk settings.

A market's ``MarketLimits`` bound each order (quantity, notional), keep limit prices within
a band around the reference price (the last trade, or the mid before any trade) and halt
the market when its trades move too far within a window (the circuit breaker). Percentages
are parts per million (10 % = 100_000), amounts 1e-8 units, times milliseconds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from engine.units import MAX_AMOUNT, PPM


@dataclass(frozen=True, slots=True)
class MarketLimits:
    """One market's risk settings; ``None`` switches a check off."""

    max_order_quantity: int | None = None
    max_order_notional: int | None = None
    price_band_ppm: int | None = None
    """A limit order priced further than this from the reference is refused; a market
    order stops at the band instead of sweeping the book."""
    breaker_move_ppm: int | None = None
    """The market halts when its trade prices within ``breaker_window_ms`` span more than
    this (highest over lowest)."""
    breaker_window_ms: int = 60_000
    breaker_cooldown_ms: int = 300_000
    """How long a circuit breaker's halt lasts before trading resumes by itself."""

    def __post_init__(self) -> None:
        for name in ("max_order_quantity", "max_order_notional"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or not 0 < value <= MAX_AMOUNT):
                raise ValueError(f"{name} must be a positive amount, got {value!r}")
        for name in ("price_band_ppm", "breaker_move_ppm"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or not 0 < value < PPM):
                raise ValueError(f"{name} must be in (0, {PPM}) ppm, got {value!r}")
        for name in ("breaker_window_ms", "breaker_cooldown_ms"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ValueError(f"{name} must be a positive number of ms, got {value!r}")


NO_LIMITS = MarketLimits()


class PriceWatch:
    """The lowest and highest trade price within a sliding time window.

    Two monotonic queues of ``(time, price)``: each price enters and leaves each queue at
    most once, so recording a trade is O(1) amortised."""

    __slots__ = ("highs", "lows", "window_ms")

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self.highs: deque[tuple[int, int]] = deque()
        self.lows: deque[tuple[int, int]] = deque()

    def record(self, now_ms: int, price: int) -> tuple[int, int]:
        """Add a trade; returns ``(lowest, highest)`` of the window, this trade included."""
        cutoff = now_ms - self.window_ms
        highs, lows = self.highs, self.lows
        while highs and highs[0][0] < cutoff:
            highs.popleft()
        while lows and lows[0][0] < cutoff:
            lows.popleft()
        while highs and highs[-1][1] <= price:
            highs.pop()
        highs.append((now_ms, price))
        while lows and lows[-1][1] >= price:
            lows.pop()
        lows.append((now_ms, price))
        return lows[0][1], highs[0][1]

    def reset(self) -> None:
        self.highs.clear()
        self.lows.clear()


def percent(ppm: int) -> str:
    """``100_000`` -> ``"10"``, ``12_500`` -> ``"1.25"``: for messages."""
    whole, rest = divmod(ppm, PPM // 100)
    if not rest:
        return str(whole)
    return f"{whole}.{rest:04d}".rstrip("0")
