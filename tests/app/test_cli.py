"""The `tradegraph` command, run as a real process against the test database."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import asyncpg
from alembic.script import ScriptDirectory

from app.accounts.passwords import verify_password
from app.config import Settings
from app.kit.db import plain_url
from app.kit.migrate import alembic_config
from tests.support.processes import ROOT, process_env


def tradegraph(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=process_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def fetch_user(database_url: str, email: str) -> asyncpg.Record | None:
    connection = await asyncpg.connect(plain_url(database_url))
    try:
        return await connection.fetchrow("SELECT * FROM users WHERE email = $1", email)
    finally:
        await connection.close()


def test_create_admin_creates_an_approved_admin_then_promotes_and_resets(
    settings: Settings,
) -> None:
    assert settings.database_url
    result = tradegraph(
        settings, "create-admin", "--email", "Root@Example.com", "--password", "first-pass"
    )
    assert result.returncode == 0, result.stderr
    user = asyncio.run(fetch_user(settings.database_url, "root@example.com"))
    assert user is not None
    assert (user["role"], user["kyc_status"]) == ("admin", "approved")
    assert user["password_hash"].startswith("$argon2id$")
    assert verify_password(user["password_hash"], "first-pass")

    again = tradegraph(
        settings, "create-admin", "--email", "root@example.com", "--password", "second-pass"
    )
    assert again.returncode == 0, again.stderr
    same = asyncio.run(fetch_user(settings.database_url, "root@example.com"))
    assert same is not None and same["id"] == user["id"]
    assert verify_password(same["password_hash"], "second-pass")


def test_create_admin_refuses_a_short_password_and_writes_nothing(settings: Settings) -> None:
    assert settings.database_url
    result = tradegraph(settings, "create-admin", "--email", "x@example.com", "--password", "short")
    assert result.returncode == 2
    assert "at least 8 characters" in result.stderr
    assert asyncio.run(fetch_user(settings.database_url, "x@example.com")) is None


def test_create_admin_refuses_the_fee_account(settings: Settings) -> None:
    result = tradegraph(
        settings, "create-admin", "--email", "fees@tradegraph.internal", "--password", "long-pass"
    )
    assert result.returncode == 2
    assert "system account" in result.stderr


def test_migrate_command_brings_an_empty_database_to_head(
    settings: Settings, scratch_database: str
) -> None:
    result = tradegraph(settings.model_copy(update={"database_url": scratch_database}), "migrate")
    assert result.returncode == 0, result.stderr

    async def head() -> str:
        connection = await asyncpg.connect(plain_url(scratch_database))
        try:
            version: str = await connection.fetchval("SELECT version_num FROM alembic_version")
            return version
        finally:
            await connection.close()

    head_revision = ScriptDirectory.from_config(alembic_config(scratch_database)).get_current_head()
    assert asyncio.run(head()) == head_revision
