"""Fixtures for tests that drive the real matching worker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from redis.asyncio import Redis

from app.config import Settings
from app.kit.bus import CommandBus
from app.kit.db import plain_url
from app.kit.redis import create_redis
from tests.support.exchange import check_invariants, create_user

NewTrader = Callable[[], Awaitable[int]]


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(plain_url(settings.database_url or ""))
    yield conn
    await conn.close()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = create_redis(settings.redis_url or "")
    yield client
    await client.aclose()


@pytest.fixture
async def trader(db: asyncpg.Connection, bus: CommandBus) -> AsyncIterator[NewTrader]:
    """Make approved users; cancel whatever they left on the books afterwards."""
    made: list[int] = []

    async def make() -> int:
        made.append(await create_user(db))
        return made[-1]

    yield make
    for user_id in made:
        reply = await bus.submit("cancel_all", {"user_id": user_id})
        assert reply["ok"], reply
    await check_invariants(db)
