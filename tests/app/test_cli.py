"""The `tradegraph` command, run as a real process against the test database."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest
from alembic.script import ScriptDirectory

from app.accounts.passwords import verify_password
from app.accounts.service import AccountError, create_admin
from app.config import Settings, default_data_dir
from app.kit.db import create_engine, create_sessionmaker, plain_url
from app.kit.metrics import serve_metrics
from app.kit.migrate import alembic_config
from tests.support.processes import ROOT, hold_port, operator_env, process_env


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


async def test_create_admin_sets_a_username_and_refuses_a_taken_or_bad_one(
    settings: Settings,
) -> None:
    assert settings.database_url
    first = await asyncio.to_thread(
        tradegraph,
        settings,
        "create-admin",
        "--email",
        "named@example.com",
        "--username",
        "Named_Admin",
        "--password",
        "long-pass",
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("admin named@example.com (Named_Admin) (id ")
    user = await fetch_user(settings.database_url, "named@example.com")
    assert user is not None and user["username"] == "Named_Admin"

    engine = create_engine(settings.database_url, pool_size=1)
    sessions = create_sessionmaker(engine)
    try:
        # The same person, the same name in another case: not "taken".
        again = await create_admin(
            sessions, email="named@example.com", password="long-pass", username="named_admin"
        )
        assert (again.id, again.username) == (user["id"], "named_admin")
        with pytest.raises(AccountError) as taken:
            await create_admin(
                sessions, email="other@example.com", password="long-pass", username="NAMED_ADMIN"
            )
        assert [p.code for p in taken.value.problems] == ["USERNAME_TAKEN"]
        with pytest.raises(AccountError) as bad:
            await create_admin(
                sessions, email="other@example.com", password="long-pass", username="a b"
            )
        assert [(p.code, p.field) for p in bad.value.problems] == [("INVALID_INPUT", "username")]
    finally:
        await engine.dispose()
    assert await fetch_user(settings.database_url, "other@example.com") is None


def _alone(data_dir: Path, cwd: Path, *args: str) -> subprocess.Popen[str]:
    """An operator command in a folder of its own, with no platform anywhere (started, not
    waited for: they run side by side)."""
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", *args],
        env=operator_env(data_dir),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


OPERATOR_COMMANDS = {
    "create-admin": ["create-admin", "--email", "a@example.com", "--password", "long-pass"],
    "migrate": ["migrate"],
    "deposit": ["deposit", "--user", "1", "--asset", "USDT", "--amount", "1"],
    "withdraw": ["withdraw", "--user", "1", "--asset", "USDT", "--amount", "1"],
}


@pytest.mark.parametrize("stale", [False, True], ids=["nothing", "stale-endpoints"])
def test_operator_commands_without_a_platform_say_so_in_one_line_and_create_nothing(
    tmp_path: Path, stale: bool
) -> None:
    data_dir = tmp_path / "data"
    if stale:  # what a `tradegraph run` killed with SIGKILL leaves behind
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        data_dir.mkdir()
        (data_dir / "endpoints.json").write_text(
            json.dumps(
                {
                    "pid": dead.pid,
                    "database_url": "postgresql://x@127.0.0.1:1/x",
                    "redis_url": "redis://127.0.0.1:1",
                }
            )
        )
    before = sorted(p.name for p in tmp_path.rglob("*"))
    # A stale record is read by the same code whatever the command: two suffice.
    names = ["create-admin", "deposit"] if stale else list(OPERATOR_COMMANDS)
    runs = [_alone(data_dir, tmp_path, *OPERATOR_COMMANDS[name]) for name in names]
    for name, run in zip(names, runs, strict=True):
        stdout, stderr = run.communicate(timeout=60)
        assert run.returncode == 2, (name, stderr)
        assert stdout == "", name
        assert stderr.count("\n") == 1, (name, stderr)
        assert "no running TradeGraph found" in stderr, name
        assert "make run" in stderr, name
        assert "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_the_default_data_dir_is_the_project_folder_whatever_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRADEGRAPH_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert Settings().data_dir == ROOT / ".tradegraph"
    assert default_data_dir() == ROOT / ".tradegraph"


EMBEDDED_POSTGRES = """
import logging, os, sys, tempfile
from pathlib import Path
from app.kit.embedded import EmbeddedServices
logging.basicConfig(level=os.environ["TRADEGRAPH_LOG_LEVEL"])
embedded = EmbeddedServices()
embedded.start_postgres(Path(sys.argv[1]))
embedded.close()
"""


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_the_embedded_postgres_is_quiet_unless_debug(tmp_path: Path, level: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", EMBEDDED_POSTGRES, str(tmp_path / "pg")],
        env={**os.environ, "TRADEGRAPH_LOG_LEVEL": level},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    if level == "INFO":
        assert output.splitlines() == [
            f"INFO:app.kit.embedded:embedded PostgreSQL at {tmp_path / 'pg'}"
        ]
    else:
        assert "initdb" in output and "pg_ctl" in output


def test_worker_metrics_move_to_a_free_port_when_theirs_is_taken(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with hold_port() as taken, caplog.at_level(logging.INFO, "app.kit.metrics"):
        port = serve_metrics("127.0.0.1", taken)
    assert port is not None and port != taken
    assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert f"127.0.0.1:{taken}" in record.getMessage()
    assert f"http://127.0.0.1:{port}/metrics" in record.getMessage()
    assert "TRADEGRAPH_WORKER_METRICS_PORT" in record.getMessage()


def test_worker_metrics_that_cannot_listen_at_all_are_off_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, "app.kit.metrics"):
        assert serve_metrics("192.0.2.1", 9101) is None  # TEST-NET: not this machine's
        assert serve_metrics("127.0.0.1", 0) is None  # off by choice: nothing said
    (record,) = caplog.records
    assert "metrics are off" in record.getMessage()
    assert "TRADEGRAPH_WORKER_METRICS_PORT" in record.getMessage()


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("TRADEGRAPH_API_PORT", "eighty", "bad setting: TRADEGRAPH_API_PORT"),
        ("TRADEGRAPH_API_PORT", "70000", "70000 is not a port"),
        ("TRADEGRAPH_ENV", "production", "needs TRADEGRAPH_JWT_SECRET"),
    ],
)
def test_a_bad_setting_is_one_line_and_starts_nothing(
    tmp_path: Path, variable: str, value: str, said: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "run"],
        env=operator_env(tmp_path / "data", **{variable: value}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and said in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []
