"""Redis wiring and the one place Redis key names are spelled.

Keys are the seed's (``orderbook:{symbol}:bids``, ``session:{userId}``,
``ratelimit:{userId}:{endpoint}``), behind an optional prefix that keeps test runs apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import BlockingConnectionPool, Redis


def create_redis(url: str, *, max_connections: int = 64) -> Redis:
    """A client whose pool waits for a free connection instead of failing under load."""
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        health_check_interval=30,
        max_connections=max_connections,
        timeout=10,
    )
    return Redis(connection_pool=pool)


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

    def pubsub_client_name(self) -> str:
        """CLIENT SETNAME of the API's subscription connections (no spaces allowed)."""
        return f"{self.prefix}pubsub".replace(" ", "_")

    def market_cache_client_name(self) -> str:
        """CLIENT SETNAME of the connection the API's market cache follows changes on."""
        return f"{self.prefix}markets".replace(" ", "_")

    def worker_heartbeat(self) -> str:
        return f"{self.prefix}worker:heartbeat"

    # The command bus (app/kit/bus.py) and the worker's events (workers/matching/).
    def command_stream(self) -> str:
        return f"{self.prefix}commands"

    def replies(self, process_id: str) -> str:
        return f"{self.prefix}replies:{process_id}"

    def book_sequence(self, symbol: str) -> str:
        return f"{self.prefix}orderbook:{symbol}:seq"

    def book_channel(self, symbol: str) -> str:
        return f"{self.prefix}events:orderbook:{symbol}"

    def trades_channel(self, symbol: str) -> str:
        return f"{self.prefix}events:trades:{symbol}"

    def user_channel(self, user_id: int) -> str:
        return f"{self.prefix}events:user:{user_id}"

    def risk_channel(self) -> str:
        return f"{self.prefix}events:risk"

    def markets_channel(self) -> str:
        """A market's status after each halt or resume (the API processes' market cache)."""
        return f"{self.prefix}events:markets"

    def activity_stream(self) -> str:
        """The committed activity (one entry per batch) the risk monitor reads."""
        return f"{self.prefix}activity"
