"""Shared start-up for every entrypoint: which PostgreSQL and Redis to use, and migrations."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from sqlalchemy.engine import make_url

from app.config import Settings
from app.kit.db import plain_url
from app.kit.embedded import EmbeddedServices

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "tradegraph"


async def ensure_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the server of ``server_url`` if missing; return its URL."""
    connection = await asyncpg.connect(plain_url(server_url))
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def resolve_services(settings: Settings) -> tuple[Settings, EmbeddedServices]:
    """Return settings whose URLs are set, starting embedded servers for those that are not.

    The embedded servers keep their data under ``settings.data_dir`` so it survives restarts;
    call ``close()`` on the returned handle to stop them.
    """
    embedded = EmbeddedServices()
    updates: dict[str, str] = {}
    try:
        if not settings.database_url:
            server_url = embedded.start_postgres(settings.data_dir / "postgres")
            updates["database_url"] = asyncio.run(ensure_database(server_url, EMBEDDED_DATABASE))
        if not settings.redis_url:
            updates["redis_url"] = embedded.start_redis(settings.data_dir / "redis")
    except BaseException:
        embedded.close()
        raise
    return settings.model_copy(update=updates), embedded
