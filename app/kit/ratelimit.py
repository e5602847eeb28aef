"""Fixed-window rate limits on the seed's ``ratelimit:{userId}:{endpoint}`` counters.

An "endpoint" is a root field of a GraphQL operation (``login``, ``placeOrder``...). Each
call adds its uses to the counter (INCRBY), which expires 60 s after its first use in the
window; over the limit, the whole operation is refused and the caller told when to retry.
Callers that are not logged in, and the fields that guard logging in, are counted per
client IP (``ratelimit:ip:1.2.3.4:login``).

All counters of one operation are bumped in one Lua script: one round trip, atomic, and
it works on Redis 6.2 (no ``EXPIRE ... NX``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from redis.asyncio import Redis

from app.config import Settings
from app.kit.redis import Keys

WINDOW_SECONDS = 60

_HIT = """
local out = {}
for i, key in ipairs(KEYS) do
    local used = redis.call('INCRBY', key, ARGV[i + 1])
    local ttl = redis.call('TTL', key)
    if ttl < 0 then
        redis.call('EXPIRE', key, ARGV[1])
        ttl = tonumber(ARGV[1])
    end
    out[#out + 1] = used
    out[#out + 1] = ttl
end
return out
"""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: a logged-in user's id, and the client's IP either way."""

    user_id: int | None
    ip: str


@dataclass(frozen=True, slots=True)
class Rule:
    key: str
    endpoint: str
    limit: int


@dataclass(frozen=True, slots=True)
class Exceeded:
    endpoint: str
    limit: int
    retry_after: int

    @property
    def message(self) -> str:
        return (
            f"rate limit exceeded for {self.endpoint}: {self.limit} per minute; "
            f"retry in {self.retry_after} s"
        )


class RateLimiter:
    def __init__(self, redis: Redis, keys: Keys, settings: Settings) -> None:
        self._keys = keys
        self._settings = settings
        self._hit = redis.register_script(_HIT)

    @property
    def enabled(self) -> bool:
        return self._settings.rate_limit_enabled

    def rule(self, caller: Caller, endpoint: str) -> Rule:
        settings = self._settings
        if endpoint in settings.rate_limits_per_ip:
            subject, limit = f"ip:{caller.ip}", settings.rate_limits_per_ip[endpoint]
        elif caller.user_id is not None:
            subject = str(caller.user_id)
            limit = settings.rate_limits_per_user.get(endpoint, settings.rate_limit_per_user)
        else:
            subject, limit = f"ip:{caller.ip}", settings.rate_limit_per_ip
        return Rule(key=self._keys.rate_limit(subject, endpoint), endpoint=endpoint, limit=limit)

    async def hit(self, caller: Caller, endpoints: Iterable[str]) -> Exceeded | None:
        """Count one use of each endpoint (a field named twice counts twice).

        Returns the limit that is exceeded (the one to wait longest for), or ``None``.
        """
        if not self.enabled:
            return None
        uses = Counter(endpoints)
        if not uses:
            return None
        rules = [self.rule(caller, endpoint) for endpoint in uses]
        result = await self._hit(
            keys=[rule.key for rule in rules],
            args=[WINDOW_SECONDS, *(uses[rule.endpoint] for rule in rules)],
        )
        exceeded = [
            Exceeded(rule.endpoint, rule.limit, max(int(result[2 * i + 1]), 1))
            for i, rule in enumerate(rules)
            if int(result[2 * i]) > rule.limit
        ]
        return max(exceeded, key=lambda e: e.retry_after, default=None)
