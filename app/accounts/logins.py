"""Login risk events: failed logins, logins from a new address, locked accounts.

Each is a ``risk_events`` row (``event_type`` LOGIN, ``metadata.rule`` ``failed_login``,
``new_ip`` or ``login_locked``) and a :class:`app.wire.RiskAlert` on the risk channel, which
admins' ``riskAlerts`` subscription turns into the row.

They are written **after** the login is answered, by tasks this process keeps (and waits
for when it stops, :meth:`LoginMonitor.drain`): the caller waits for none of it, and a
failure for an unknown email takes exactly as long as one for a real account (whose event
costs a write the other usually does not). An API process killed in between loses the
events of its last few logins; the login itself is unaffected.

Flooding: a known account's failures are at most ``login_failures_per_account`` rows (plus
one ``login_locked``) per failure window, since the throttle then refuses before counting.
An email no account has can be typed endlessly, so its failures are a row (``user_id``
NULL, ``metadata.unknown_account``) at most once per client IP per failure window and at
most ``login_unknown_email_events_per_minute`` a minute in all (counted in Redis).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Coroutine
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts import repository
from app.accounts.sessions import FailedLogin
from app.kit.redis import Keys
from app.risk.service import RiskService

log = logging.getLogger(__name__)

FAILED_LOGIN = "failed_login"
NEW_IP = "new_ip"
LOGIN_LOCKED = "login_locked"

# May an unknown email's failure from this IP be an event? Once per IP per window
# (KEYS[1], ARGV[1] seconds), and at most ARGV[2] a minute in all (KEYS[2]).
_UNKNOWN_ALLOWED = """
if tonumber(ARGV[2]) <= 0 then
    return 0
end
local total = tonumber(redis.call('GET', KEYS[2]) or '0')
if total >= tonumber(ARGV[2]) then
    return 0
end
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
    return 0
end
if redis.call('INCR', KEYS[2]) == 1 then
    redis.call('EXPIRE', KEYS[2], 60)
end
return 1
"""


def canonical_ip(ip: str | None) -> str | None:
    """The address in its canonical text, or ``None`` if it is not one ("unknown")."""
    if ip is None:
        return None
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return None


class LoginMonitor:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        risk: RiskService,
        redis: Redis,
        keys: Keys,
        *,
        window_seconds: int,
        unknown_email_events_per_minute: int,
    ) -> None:
        self._db = sessions
        self._risk = risk
        self._keys = keys
        self._window = window_seconds
        self._unknown_per_minute = unknown_email_events_per_minute
        self._unknown_allowed = redis.register_script(_UNKNOWN_ALLOWED)
        self._tasks: set[asyncio.Task[None]] = set()

    # -- what the login path calls: each returns at once ---------------------------------

    def failed(
        self, *, user_id: int | None, email: str, ip: str | None, failure: FailedLogin | None
    ) -> None:
        self._spawn(self._failed(user_id, email, canonical_ip(ip), failure))

    def succeeded(self, *, user_id: int, ip: str | None) -> None:
        """A login (or the sign-up) from ``ip``; an address the user never came from is
        ``new_ip``, unless it is their first one."""
        address = canonical_ip(ip)
        if address is not None:
            self._spawn(self._succeeded(user_id, address))

    async def drain(self) -> None:
        """Wait for every event still being written."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- the writes ----------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name="login-risk-event")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("a login risk event was not recorded", exc_info=exc)

    async def _failed(
        self, user_id: int | None, email: str, ip: str | None, failure: FailedLogin | None
    ) -> None:
        attempts = failure.attempts if failure else None
        if user_id is None:
            subject = f"login-unknown:{ip or 'unknown'}"
            allowed = await self._unknown_allowed(
                keys=[
                    self._keys.rate_limit(subject, "risk"),
                    self._keys.rate_limit("login-unknown:all", "risk"),
                ],
                args=[self._window, self._unknown_per_minute],
            )
            if not allowed:
                return
            await self._risk.raise_event(
                user_id=None,
                event_type="LOGIN",
                severity="LOW",
                description=f"failed login for an email no account has, from {ip or 'unknown'}",
                metadata={
                    "rule": FAILED_LOGIN,
                    "ip": ip,
                    "email": email,
                    "attempts": attempts,
                    "unknown_account": True,
                },
            )
            return
        await self._risk.raise_event(
            user_id=user_id,
            event_type="LOGIN",
            severity="LOW",
            description=f"failed login from {ip or 'unknown'} ({attempts} in the window)",
            metadata={"rule": FAILED_LOGIN, "ip": ip, "attempts": attempts},
        )
        if failure is not None and failure.locked:
            await self._risk.raise_event(
                user_id=user_id,
                event_type="LOGIN",
                severity="MEDIUM",
                description=(
                    f"login locked after {failure.attempts} failed logins, "
                    f"for {failure.retry_after} s"
                ),
                metadata={
                    "rule": LOGIN_LOCKED,
                    "ip": ip,
                    "attempts": failure.attempts,
                    "locked_for_seconds": failure.retry_after,
                },
            )

    async def _succeeded(self, user_id: int, ip: str) -> None:
        async with self._db() as session, session.begin():
            new, known = await repository.record_login_ip(session, user_id, ip)
        if new and known > 0:
            await self._risk.raise_event(
                user_id=user_id,
                event_type="LOGIN",
                severity="LOW",
                description=f"login from a new address, {ip} ({known} known before)",
                metadata={"rule": NEW_IP, "ip": ip, "known_ips": known},
            )
