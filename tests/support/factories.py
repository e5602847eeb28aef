"""Factories for tests: rows straight into the test database, sessions straight into Redis.

Every test shares one database per run, so each factory call makes unique emails and names;
never assume a table is empty. Logging in here skips HTTP (and so the per-IP login limit).
"""

from __future__ import annotations

import uuid
from functools import cache
from typing import Any

from app.accounts.models import User
from app.accounts.passwords import hash_password
from app.risk.models import RiskEvent
from app.services import Services

PASSWORD = "correct horse battery"


@cache
def _hashed(password: str) -> str:
    return hash_password(password)  # argon2 is slow on purpose: hash each password once


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def unique_username(prefix: str = "user") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def create_user(
    services: Services,
    *,
    email: str | None = None,
    username: str | None = None,
    password: str = PASSWORD,
    role: str = "user",
    kyc_status: str = "pending",
    fee_tier: int = 1,
) -> User:
    user = User(
        email=email or unique_email(role),
        username=username or unique_username(role),
        password_hash=_hashed(password),
        role=role,
        kyc_status=kyc_status,
        fee_tier=fee_tier,
    )
    async with services.sessions() as session:
        session.add(user)
        await session.commit()
        await session.refresh(user)
    return user


async def create_admin(services: Services, **kwargs: Any) -> User:
    return await create_user(services, role="admin", kyc_status="approved", **kwargs)


async def login(services: Services, user: User) -> str:
    """A live bearer token for ``user`` (replacing any earlier session of theirs)."""
    return (await services.accounts.start_session(user)).token


async def create_risk_event(
    services: Services,
    *,
    user: User | None = None,
    event_type: str = "SUSPICIOUS_ACTIVITY",
    severity: str = "LOW",
    description: str = "self-trade prevented",
    metadata: dict[str, Any] | None = None,
    resolved: bool = False,
) -> RiskEvent:
    event = RiskEvent(
        user_id=user.id if user else None,
        event_type=event_type,
        severity=severity,
        description=description,
        metadata_=metadata,
        resolved=resolved,
    )
    async with services.sessions() as session:
        session.add(event)
        await session.commit()
        await session.refresh(event)
    return event
