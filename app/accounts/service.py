"""Account operations the API and the CLI share: sign-up, login, sessions, admin changes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import wire
from app.accounts import repository
from app.accounts.errors import AccountErrorCode
from app.accounts.logins import LoginMonitor
from app.accounts.models import User
from app.accounts.passwords import hash_password, verify_password
from app.accounts.sessions import LoginThrottle, SessionStore, Viewer, permissions_for
from app.kit.auth import InvalidToken, decode_access_token, issue_access_token
from app.kit.bus import CommandBus
from app.kit.commands import dispatch
from app.kit.errors import Problem, Refused
from app.kit.pagination import Page, PageRequest

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256
USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,50}$")
KYC_STATUSES = frozenset({"pending", "approved", "rejected"})
FEE_TIERS = range(1, 6)


class AccountError(Refused):
    """An account operation was refused; ``problems`` (and the message) say why."""


def _problem(code: AccountErrorCode, message: str, field: str | None = None) -> Problem:
    return Problem(code=code.value, message=message, field=field)


def _email_problem(email: str) -> Problem | None:
    local, _, domain = email.partition("@")
    if not local or "." not in domain or " " in email or "@" in domain or len(email) > 255:
        return _problem(
            AccountErrorCode.INVALID_INPUT, f"not a valid email address: {email!r}", "email"
        )
    return None


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if problem := _email_problem(email):
        raise AccountError(problem)
    return email


def _password_problem(password: str, field: str = "password") -> Problem | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return _problem(
            AccountErrorCode.INVALID_INPUT,
            f"password must be at least {MIN_PASSWORD_LENGTH} characters",
            field,
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        return _problem(
            AccountErrorCode.INVALID_INPUT,
            f"password must be at most {MAX_PASSWORD_LENGTH} characters",
            field,
        )
    return None


@cache
def _decoy_hash() -> str:
    """Verified against when the email is unknown, so both cases take as long."""
    return hash_password("decoy password, never anyone's")


@dataclass(frozen=True, slots=True)
class Login:
    token: str
    expires_at: datetime
    user: User
    viewer: Viewer


class AccountService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        session_store: SessionStore,
        *,
        jwt_secret: str,
        token_ttl: timedelta,
        bus: CommandBus,
        command_timeout: float,
        login_throttle: LoginThrottle | None = None,
        login_monitor: LoginMonitor | None = None,
    ) -> None:
        self._db = sessions
        self._throttle = login_throttle
        self.monitor = login_monitor
        self._sessions = session_store
        self._secret = jwt_secret
        self._ttl = token_ttl
        self._bus = bus
        self._command_timeout = command_timeout

    # -- sign-up, login, sessions -------------------------------------------------------

    async def register(
        self, *, email: str, username: str, password: str, ip: str | None = None
    ) -> Login:
        """Create a trader (KYC pending, fee tier 1) and log them in (``ip``, where they
        signed up from, is their first known address)."""
        email, username = email.strip().lower(), username.strip()
        problems = [
            p
            for p in (
                _email_problem(email),
                None
                if USERNAME.fullmatch(username)
                else _problem(
                    AccountErrorCode.INVALID_INPUT,
                    "username must be 3–50 letters, digits, '_', '.' or '-'",
                    "username",
                ),
                _password_problem(password),
            )
            if p is not None
        ]
        if problems:
            raise AccountError(*problems)
        password_hash = await asyncio.to_thread(hash_password, password)
        async with self._db() as session:
            if await repository.get_user_by_email(session, email) is not None:
                problems.append(_email_taken())
            if await repository.username_taken(session, username):
                problems.append(_username_taken())
            if problems:
                raise AccountError(*problems)
            user = User(email=email, username=username, password_hash=password_hash)
            session.add(user)
            try:
                await session.commit()
            except IntegrityError as exc:  # lost a race with a concurrent sign-up
                raise AccountError(
                    _username_taken() if "username" in str(exc.orig) else _email_taken()
                ) from exc
            await session.refresh(user)
        login = await self.start_session(user)
        if self.monitor is not None:
            self.monitor.succeeded(user_id=user.id, ip=ip)
        return login

    async def login(self, *, email: str, password: str, ip: str | None = None) -> Login:
        """Check the password and start a new session (ending any previous one).

        After too many failures for one email (see :class:`LoginThrottle`) every attempt
        for it is refused, the right password too, with ``LOGIN_LOCKED`` and a message
        saying when to retry; the same for an email no account has. A wrong password is
        ``INVALID_CREDENTIALS``. Failures, the lock and a login from an address (``ip``,
        the client's) the user never came from are LOGIN risk events
        (:class:`LoginMonitor`), written after this returns.
        """
        email = email.strip().lower()
        if self._throttle is not None:
            retry_after = await self._throttle.retry_after(email)
            if retry_after is not None:
                raise AccountError(_locked(retry_after))
        async with self._db() as session:
            user = await repository.get_user_by_email(session, email)
        password_hash = user.password_hash if user is not None else _decoy_hash()
        matches = await asyncio.to_thread(verify_password, password_hash, password)
        if user is None or not matches or not permissions_for(user.role):
            failure = await self._throttle.failed(email) if self._throttle is not None else None
            if self.monitor is not None:
                known = user is not None and user.role != "system"
                self.monitor.failed(
                    user_id=user.id if known and user else None,
                    email=email,
                    ip=ip,
                    failure=failure,
                )
            raise AccountError(
                _problem(AccountErrorCode.INVALID_CREDENTIALS, "wrong email or password")
            )
        if self._throttle is not None:
            await self._throttle.succeeded(email)
        login = await self.start_session(user)
        if self.monitor is not None:
            self.monitor.succeeded(user_id=user.id, ip=ip)
        return login

    async def start_session(self, user: User) -> Login:
        """Issue a token for ``user`` and make it their one live session (no password check:
        callers have already established who this is)."""
        access = issue_access_token(self._secret, user.id, ttl=self._ttl)
        permissions = permissions_for(user.role)
        await self._sessions.open(user.id, access.token, permissions)
        return Login(
            token=access.token,
            expires_at=access.expires_at,
            user=user,
            viewer=Viewer(user_id=user.id, permissions=permissions),
        )

    async def authenticate(self, token: str, *, fresh: bool = False) -> Viewer:
        """The viewer a token stands for; :class:`InvalidToken` unless its session is live
        (asking Redis if ``fresh``, else perhaps a check made less than a second ago)."""
        access = decode_access_token(self._secret, token)
        viewer = await self._sessions.check(access.user_id, token, fresh=fresh)
        if viewer is None:
            raise InvalidToken("session ended (logged out, or replaced by a newer login)")
        return viewer

    async def logout(self, token: str) -> bool:
        """End the session this token belongs to; ``False`` if it had already ended."""
        try:
            access = decode_access_token(self._secret, token)
        except InvalidToken:
            return False
        return await self._sessions.close(access.user_id, token)

    # -- reads -----------------------------------------------------------------------------

    async def get(self, user_id: int) -> User | None:
        async with self._db() as session:
            return await repository.get_user(session, user_id)

    async def get_many(self, user_ids: Sequence[int]) -> Sequence[User]:
        async with self._db() as session:
            return await repository.get_users(session, user_ids)

    async def list_users(self, page: PageRequest, *, kyc_status: str | None = None) -> Page[User]:
        async with self._db() as session:
            return await repository.list_users(session, page, kyc_status=kyc_status)

    # -- admin -----------------------------------------------------------------------------

    async def set_kyc_status(self, user_id: int, status: str) -> User:
        """Approve or reject a user's KYC. The matching worker enforces it, so the change
        is its command: committed (it writes the row) before this returns, it holds for the
        user's very next order through any API process. A rejected user's resting orders
        stay on the book; cancelling them is always allowed."""
        assert status in KYC_STATUSES
        command = wire.SetKyc(user_id=user_id, status=status)  # type: ignore[arg-type]
        return await self._through_worker(user_id, command, field="userId")

    async def set_fee_tier(self, user_id: int, tier: int) -> User:
        """Pin the user's fee tier (the 30-day volume no longer decides it)."""
        if tier not in FEE_TIERS:
            raise AccountError(
                _problem(AccountErrorCode.INVALID_INPUT, "fee tier must be 1 to 5", "tier")
            )
        # The matching worker charges fees, so it must learn the tier: it writes the row too.
        return await self._through_worker(
            user_id, wire.SetFeeTier(user_id=user_id, tier=tier), field="tier"
        )

    async def clear_fee_tier_override(self, user_id: int) -> User:
        """Unpin the user's fee tier: it stays as it is until their volume moves it (a fill
        reaching the next threshold, or the next run of the fee job)."""
        return await self._through_worker(
            user_id, wire.SetFeeTier(user_id=user_id, tier=None), field="userId"
        )

    async def _through_worker(self, user_id: int, command: wire.Command, *, field: str) -> User:
        """A change to a user that the matching worker makes (and writes); the user after it."""
        user = await self.get(user_id)
        if user is None or user.role == "system":
            raise AccountError(
                _problem(AccountErrorCode.NOT_FOUND, f"no user with id {user_id}", "userId")
            )
        reply = await dispatch(self._bus, command, timeout=self._command_timeout)
        if isinstance(reply, Problem):
            code = AccountErrorCode(reply.code) if reply.code == "TIMEOUT" else None
            raise AccountError(
                _problem(code or AccountErrorCode.INVALID_INPUT, reply.message, field)
            )
        refreshed = await self.get(user_id)
        assert refreshed is not None
        return refreshed


def _locked(retry_after: int) -> Problem:
    return _problem(
        AccountErrorCode.LOGIN_LOCKED,
        f"too many failed logins for this account; try again in {retry_after} s",
    )


def _email_taken() -> Problem:
    return _problem(AccountErrorCode.EMAIL_TAKEN, "that email is already registered", "email")


def _username_taken() -> Problem:
    return _problem(AccountErrorCode.USERNAME_TAKEN, "that username is taken", "username")


async def create_admin(
    sessions: async_sessionmaker[AsyncSession],
    *,
    email: str,
    password: str,
    username: str | None = None,
    bus: CommandBus | None = None,
    timeout: float = 5.0,  # noqa: ASYNC109 - how long to wait for the worker's reply
) -> User:
    """Create an admin with approved KYC, or promote the existing user with that email.

    The password is (re)set either way, so an operator who lost it can run this again; a
    ``username`` given is set too (unique regardless of case, like a trader's).

    The row is written here, KYC included, so this works with the worker stopped (it loads
    every user's KYC when it starts). Given the ``bus`` of a running worker, the approval is
    then also sent to it as ``set_kyc``: a worker that already knew the user as pending
    learns it before this returns (:class:`AccountError` TIMEOUT if it does not answer).
    """
    email = normalise_email(email)
    if problem := _password_problem(password):
        raise AccountError(problem)
    if username is not None:
        username = username.strip()
        if not USERNAME.fullmatch(username):
            raise AccountError(
                _problem(
                    AccountErrorCode.INVALID_INPUT,
                    "username must be 3–50 letters, digits, '_', '.' or '-'",
                    "username",
                )
            )
    async with sessions() as session, session.begin():
        user = await repository.get_user_by_email(session, email)
        if user is None:
            user = User(email=email, username=None, password_hash="")
            session.add(user)
        elif user.role == "system":
            raise AccountError(
                _problem(
                    AccountErrorCode.INVALID_INPUT,
                    "the exchange's system account cannot be made an admin",
                    "email",
                )
            )
        if username is not None:
            renamed = (user.username or "").lower() != username.lower()
            if renamed and await repository.username_taken(session, username):
                raise AccountError(_username_taken())
            user.username = username
        user.password_hash = hash_password(password)
        user.role = "admin"
        user.kyc_status = "approved"
    if bus is not None:
        command = wire.SetKyc(user_id=user.id, status="approved")
        reply = await dispatch(bus, command, timeout=timeout)
        if isinstance(reply, Problem):
            code = AccountErrorCode(reply.code) if reply.code == "TIMEOUT" else None
            raise AccountError(_problem(code or AccountErrorCode.INVALID_INPUT, reply.message))
    return user
