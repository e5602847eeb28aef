"""Login sessions in Redis: the seed's ``session:{userId}`` hash (TTL 24 h).

Fields: ``token`` (the one access token this session accepts), ``lastActivity`` (ISO-8601,
touched whenever a check reaches Redis, see below) and ``permissions`` (JSON list). One
session per user, as the seed's key says: a new login replaces the previous token, and logging out
deletes the hash, so the old token stops working at once.

Each API process remembers a session it has checked for ``cache_seconds``
(``TRADEGRAPH_SESSION_CACHE_SECONDS``, 0 turns it off), so a client's operations do not each
cost a Redis round trip (~15 % of a light request's CPU). Revocation still works: opening or
closing a session publishes the user's id on ``sessions:revoked`` and every process drops
what it remembers of that user as it hears it (the process that closed it, before it
answers); a process that is not subscribed — Redis went away — remembers nothing until it
is again. ``lastActivity`` is then touched when a process checks Redis, at most once per
``cache_seconds`` per user and process. A running subscription's check before each message
(``fresh=True``) always asks Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis

from app.kit.redis import Keys

log = logging.getLogger(__name__)

REVOKED_CHANNEL = "sessions:revoked"
CACHE_LIMIT = 100_000

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


# One failed login: count it, and start the window with the first failure. Returns the
# count and the seconds the window has left.
_FAILED = """
local used = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if used == 1 or ttl < 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
    ttl = tonumber(ARGV[1])
end
return {used, ttl}
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
    def __init__(
        self, redis: Redis, keys: Keys, ttl_seconds: int, *, cache_seconds: float = 0.0
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = ttl_seconds
        self._check = redis.register_script(_CHECK)
        self._close = redis.register_script(_CLOSE)
        self.cache_seconds = cache_seconds
        self._channel = keys.channel(REVOKED_CHANNEL)
        # user id -> (their token, monotonic time it may be used until, viewer): one session
        # per user, so one entry.
        self._checked: dict[int, tuple[str, float, Viewer]] = {}
        self._listening = False  # subscribed to revocations: only then is _checked used
        self._revocations = 0  # how many were heard: one during a round trip wins over it
        self._listener: asyncio.Task[None] | None = None

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
            pipe.publish(self._channel, str(user_id))
            await pipe.execute()
        self._forget(user_id)

    async def check(self, user_id: int, token: str, *, fresh: bool = False) -> Viewer | None:
        """The viewer if ``token`` is the user's current session, else ``None``.

        Remembered for ``cache_seconds`` unless ``fresh`` (see the module's docstring)."""
        if self.cache_seconds > 0:
            if self._listener is None:
                self._listener = asyncio.create_task(self._listen(), name="session-revocations")
            if self._listening and not fresh:
                remembered = self._checked.get(user_id)
                if (
                    remembered is not None
                    and remembered[0] == token
                    and remembered[1] > time.monotonic()
                ):
                    return remembered[2]
        listening, revocations = self._listening, self._revocations
        found = await self._check(keys=[self._keys.session(user_id)], args=[token, _now()])
        if found is None:
            return None
        permissions = json.loads(found) if found else []
        viewer = Viewer(user_id=user_id, permissions=frozenset(permissions))
        unchanged = listening and self._listening and revocations == self._revocations
        if unchanged and self.cache_seconds > 0:
            if len(self._checked) >= CACHE_LIMIT:
                self._checked.clear()
            self._checked[user_id] = (token, time.monotonic() + self.cache_seconds, viewer)
        return viewer

    async def close(self, user_id: int, token: str) -> bool:
        """End the session if ``token`` is its current token; say whether one was ended."""
        self._forget(user_id)
        ended = bool(await self._close(keys=[self._keys.session(user_id)], args=[token]))
        if ended:
            await self._redis.publish(self._channel, str(user_id))
        self._forget(user_id)
        return ended

    def _forget(self, user_id: int) -> None:
        self._revocations += 1
        self._checked.pop(user_id, None)

    async def _listen(self) -> None:
        """Drop what is remembered of each user named on the revocation channel; remember
        nothing while not subscribed."""
        backoff = 0.1
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._listening = True
                backoff = 0.1
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        with contextlib.suppress(ValueError):
                            self._forget(int(message["data"]))
            except Exception as exc:
                log.warning("session revocations lost (%s); resubscribing in %.1fs", exc, backoff)
            finally:
                self._listening = False
                self._revocations += 1
                self._checked.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None


@dataclass(frozen=True, slots=True)
class FailedLogin:
    """One failure as the throttle counted it: ``attempts`` in the window so far, and
    ``locked`` for the failure that reached the limit (once per window: the locked ones
    after it are refused before they are counted)."""

    attempts: int
    locked: bool
    retry_after: int


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

    async def failed(self, email: str) -> FailedLogin:
        """Count one failure for ``email``; whether this one locked it."""
        used, ttl = await self._failed(keys=[self._key(email)], args=[self.window])
        return FailedLogin(
            attempts=int(used), locked=int(used) == self.limit, retry_after=max(int(ttl), 1)
        )

    async def succeeded(self, email: str) -> None:
        await self._redis.delete(self._key(email))
