"""Shared start-up for every entrypoint: which PostgreSQL and Redis to use, and migrations.

`tradegraph run` records the servers it uses in ``<data dir>/endpoints.json``; the operator
commands (create-admin, migrate, deposit, withdraw) read that file, so they reach the running
platform from any folder (the data dir does not depend on the current directory, see
:func:`app.config.default_data_dir`). They never start servers of their own that would
create an empty database: without a running platform they use only an embedded cluster that
already exists in the data dir, and otherwise say what to do (:class:`PlatformNotFound`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from app.config import Settings
from app.kit.db import plain_url
from app.kit.embedded import EmbeddedServices

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "tradegraph"
ENDPOINTS_FILE = "endpoints.json"


class PlatformNotFound(RuntimeError):
    """An operator command found no server to talk to; the message says what to do."""


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


# -- the running platform, for operator commands ---------------------------------------------


def endpoints_file(settings: Settings) -> Path:
    return settings.data_dir / ENDPOINTS_FILE


def record_endpoints(settings: Settings, api_url: str) -> None:
    """Say where this `tradegraph run` is (written whole, then renamed into place)."""
    path = endpoints_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "pid": os.getpid(),
        "api_url": api_url,
        "database_url": settings.database_url,
        "redis_url": settings.redis_url,
        "redis_prefix": settings.redis_prefix,
    }
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(record, indent=2) + "\n")
    partial.replace(path)


def forget_endpoints(settings: Settings) -> None:
    """Remove the record if it is this process's own."""
    running = running_platform(settings)
    if running is not None and running["pid"] == os.getpid():
        endpoints_file(settings).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_platform(settings: Settings) -> dict[str, Any] | None:
    """What the `tradegraph run` of this data dir recorded, if that process is still up."""
    try:
        record: dict[str, Any] = json.loads(endpoints_file(settings).read_text())
        pid = int(record["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if _alive(pid) else None


def _not_running(settings: Settings, what: str, setting: str) -> PlatformNotFound:
    return PlatformNotFound(
        f"no running TradeGraph found in {settings.data_dir.resolve()} and {what}: start it "
        f"with `make run` in the project folder (or `tradegraph run`), set {setting}, or "
        "point TRADEGRAPH_DATA_DIR at the data dir of the running one"
    )


def locate_platform(
    settings: Settings, *, database: bool = False, redis: bool = False
) -> tuple[Settings, EmbeddedServices]:
    """The servers an operator command should use, whatever the current directory.

    In order: ``DATABASE_URL`` / ``REDIS_URL`` when set; the servers the running
    `tradegraph run` of the data dir recorded; for the database only, the embedded cluster
    already in the data dir (started for this command; ``close()`` the handle). Nothing is
    ever created: otherwise :class:`PlatformNotFound`.
    """
    running = running_platform(settings)
    updates: dict[str, Any] = {}
    if running is not None:
        if database and not settings.database_url:
            updates["database_url"] = running["database_url"]
        if redis and not settings.redis_url:
            updates["redis_url"] = running["redis_url"]
            updates["redis_prefix"] = running.get("redis_prefix", "")
    settings = settings.model_copy(update=updates)
    if redis and not settings.redis_url:
        raise _not_running(settings, "REDIS_URL is not set", "REDIS_URL")
    embedded = EmbeddedServices()
    if database and not settings.database_url:
        cluster = settings.data_dir / "postgres"
        if not (cluster / "PG_VERSION").is_file():
            raise _not_running(settings, f"no database in {cluster.resolve()}", "DATABASE_URL")
        try:
            server_url = embedded.start_postgres(cluster)
            url = asyncio.run(ensure_database(server_url, EMBEDDED_DATABASE))
        except BaseException:
            embedded.close()
            raise
        settings = settings.model_copy(update={"database_url": url})
    return settings, embedded
