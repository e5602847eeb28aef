"""Login sessions in Redis: the seed's ``session:{userId}`` hash (TTL 24 h).

Fields: ``token`` (the one access token this session accepts), ``lastActivity`` (ISO-8601,
touched on every authenticated operation) and ``permissions`` (JSON list). One session per
user, as the seed's key says: a new login replaces the previous token, and logging out
deletes the hash, so the old token stops working at once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis

from app.kit.redis import Keys

TRADE = "trade"
ADMIN = "admin"

# Atomic check-and-touch: the session must exist and hold exactly this token. Touching
# lastActivity only then means a deleted session is never recreated without its TTL.
_CHECK = """
local found = redis.call('HMGET', KEYS[1], 'token', 'permissions')
if found[1] ~= ARGV[1] then
    return false
end
redis.call('HSET', KEYS[1], 'lastActivity', ARGV[2])
return found[2]
"""

# Delete the session only if it still belongs to this token (a newer login keeps its own).
_CLOSE = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


# One failed login: count it, and start the window with the first failure.
_FAILED = """
local used = redis.call('INCR', KEYS[1])
if used == 1 or redis.call('TTL', KEYS[1]) < 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return used
"""


def permissions_for(role: str) -> frozenset[str]:
    if role == "admin":
        return frozenset({TRADE, ADMIN})
    if role == "user":
        return frozenset({TRADE})
    return frozenset()


@dataclass(frozen=True, slots=True)
class Viewer:
    """The logged-in caller of one request, as their session describes them."""

    user_id: int
    permissions: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.permissions


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class SessionStore:
    def __init__(self, redis: Redis, keys: Keys, ttl_seconds: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = ttl_seconds
        self._check = redis.register_script(_CHECK)
        self._close = redis.register_script(_CLOSE)

    async def open(self, user_id: int, token: str, permissions: frozenset[str]) -> None:
        """Start the user's session with ``token``, replacing any previous one."""
        key = self._keys.session(user_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(
                key,
                mapping={
                    "token": token,
                    "lastActivity": _now(),
                    "permissions": json.dumps(sorted(permissions)),
                },
            )
            pipe.expire(key, self._ttl)
            await pipe.execute()

    async def check(self, user_id: int, token: str) -> Viewer | None:
        """The viewer if ``token`` is the user's current session, else ``None``."""
        found = await self._check(keys=[self._keys.session(user_id)], args=[token, _now()])
        if found is None:
            return None
        permissions = json.loads(found) if found else []
        return Viewer(user_id=user_id, permissions=frozenset(permissions))

    async def close(self, user_id: int, token: str) -> bool:
        """End the session if ``token`` is its current token; say whether one was ended."""
        return bool(await self._close(keys=[self._keys.session(user_id)], args=[token]))


class LoginThrottle:
    """Failed logins per account: past ``limit`` failures within ``window_seconds`` of the
    first, every login for that email is refused until the window ends.

    Counted per email whether or not an account has it (so the refusal says nothing about
    which emails exist), under ``ratelimit:login-account:<sha256 of the email>:login``.
    """

    def __init__(self, redis: Redis, keys: Keys, *, limit: int, window_seconds: int) -> None:
        self._redis = redis
        self._keys = keys
        self.limit = limit
        self.window = window_seconds
        self._failed = redis.register_script(_FAILED)

    def _key(self, email: str) -> str:
        digest = hashlib.sha256(email.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return self._keys.rate_limit(f"login-account:{digest}", "login")

    async def retry_after(self, email: str) -> int | None:
        """Seconds until ``email`` may try again, or ``None`` if it may now."""
        key = self._key(email)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.ttl(key)
            used, ttl = await pipe.execute()
        if used is None or int(used) < self.limit:
            return None
        return max(int(ttl), 1)

    async def failed(self, email: str) -> None:
        await self._failed(keys=[self._key(email)], args=[self.window])

    async def succeeded(self, email: str) -> None:
        await self._redis.delete(self._key(email))
