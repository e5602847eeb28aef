"""Redis wiring and the one place Redis key names are spelled.

Keys are the seed's (``orderbook:{symbol}:bids``, ``session:{userId}``,
``ratelimit:{userId}:{endpoint}``), behind an optional prefix that keeps test runs apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis


def create_redis(url: str) -> Redis:
    return Redis.from_url(url, decode_responses=True, health_check_interval=30)


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = ""

    def order_book(self, symbol: str, side: str) -> str:
        """``side`` is ``bids`` or ``asks``."""
        return f"{self.prefix}orderbook:{symbol}:{side}"

    def session(self, user_id: int) -> str:
        return f"{self.prefix}session:{user_id}"

    def rate_limit(self, subject: str, endpoint: str) -> str:
        return f"{self.prefix}ratelimit:{subject}:{endpoint}"

    def channel(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def worker_heartbeat(self) -> str:
        return f"{self.prefix}worker:heartbeat"
