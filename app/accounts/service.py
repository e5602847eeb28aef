"""Account operations the API and the CLI share."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts import repository
from app.accounts.models import User
from app.accounts.passwords import hash_password

MIN_PASSWORD_LENGTH = 8


class AccountError(ValueError):
    """An account operation was refused; the message says why."""


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    local, _, domain = email.partition("@")
    if not local or "." not in domain or " " in email or len(email) > 255:
        raise AccountError(f"not a valid email address: {email!r}")
    return email


async def create_admin(
    sessions: async_sessionmaker[AsyncSession], *, email: str, password: str
) -> User:
    """Create an admin with approved KYC, or promote the existing user with that email.

    The password is (re)set either way, so an operator who lost it can run this again.
    """
    email = normalise_email(email)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    async with sessions() as session, session.begin():
        user = await repository.get_user_by_email(session, email)
        if user is None:
            user = User(email=email, username=None, password_hash="")
            session.add(user)
        elif user.role == "system":
            raise AccountError("the exchange's system account cannot be made an admin")
        user.password_hash = hash_password(password)
        user.role = "admin"
        user.kyc_status = "approved"
    return user
