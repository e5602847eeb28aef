"""The latency arithmetic of the benchmark, kept pure so a test can check it.

At a fixed offered rate, request ``i`` is *scheduled* at ``start + i / rate``. A load
generator that measures from the moment it actually sends hides every stall of the server:
while a connection waits for a slow answer, the requests due in the meantime are sent late
and then look fast ("coordinated omission"). Here latency is counted from the scheduled time,
so a stall shows in every request it delayed — what a user arriving at that rate would see.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

QUANTILES = (0.5, 0.9, 0.99, 0.999)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``q`` of them at or below."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50 / p90 / p99 / p99.9 / max / mean of ``values`` (same unit out as in)."""
    ordered = sorted(values)
    out = {f"p{q * 100:g}": percentile(ordered, q) for q in QUANTILES}
    out["max"] = ordered[-1]
    out["mean"] = sum(ordered) / len(ordered)
    return out


def schedule(rate: float, count: int, start: float = 0.0) -> list[float]:
    """When each of ``count`` requests is due at ``rate`` per second."""
    return [start + i / rate for i in range(count)]


def co_latencies(scheduled: Sequence[float], done: Sequence[float]) -> list[float]:
    """Latency of each request from its scheduled send time to its answer."""
    return [end - due for due, end in zip(scheduled, done, strict=True)]


def simulate(
    scheduled: Sequence[float], service: Sequence[float], connections: int
) -> tuple[list[float], list[float]]:
    """What the fixed-rate runner does, on paper: each request, in order, goes out on the
    first connection free at or after its scheduled time and takes ``service`` seconds.

    Returns (sent, done) times per request. ``done - sent`` is what a naive generator
    reports; ``co_latencies(scheduled, done)`` is what this benchmark reports."""
    free = [scheduled[0] if scheduled else 0.0] * connections
    heapq.heapify(free)
    sent, done = [], []
    for due, takes in zip(scheduled, service, strict=True):
        at = max(due, heapq.heappop(free))
        sent.append(at)
        done.append(at + takes)
        heapq.heappush(free, at + takes)
    return sent, done
