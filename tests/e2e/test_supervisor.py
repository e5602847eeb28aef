"""`tradegraph run` (what `make run` runs) with its ports taken, and operator commands run
from another folder against it."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import pytest

from app.kit.db import plain_url
from tests.support.processes import Supervisor, hold_port, operator_env

pytestmark = pytest.mark.e2e


def test_the_platform_is_ready_while_the_worker_metrics_port_is_taken(
    supervisor: Supervisor, taken_metrics_port: int
) -> None:
    ready = httpx.get(f"{supervisor.url}/readyz", timeout=5)
    assert ready.status_code == 200
    assert ready.json() == {
        "ready": True,
        "checks": {"postgres": "ok", "redis": "ok", "worker": "ok"},
    }
    log = supervisor.log()
    assert "Traceback" not in log
    assert "restarting" not in log  # the worker came up once and stayed up
    (line,) = [line for line in log.splitlines() if f":{taken_metrics_port}" in line]
    assert "TRADEGRAPH_WORKER_METRICS_PORT" in line
    moved = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line)
    assert moved is not None and int(moved[1]) != taken_metrics_port
    metrics = httpx.get(moved[0], timeout=5)
    assert metrics.status_code == 200
    assert "tradegraph_worker_commands_total" in metrics.text


def _run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("how", ["--port", "TRADEGRAPH_API_PORT"])
def test_a_taken_api_port_is_one_line_naming_the_port_and_the_setting(
    how: str, tmp_path: Path
) -> None:
    with hold_port() as port:
        # Servers that do not exist: the port is checked before anything else starts.
        env = operator_env(
            tmp_path / "data",
            DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",
            REDIS_URL="redis://127.0.0.1:1/0",
        )
        args = ["run", "--port", str(port)] if how == "--port" else ["run"]
        if how == "TRADEGRAPH_API_PORT":
            env["TRADEGRAPH_API_PORT"] = str(port)
        result = _run(*args, env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"127.0.0.1:{port} is already in use" in result.stderr
    assert "--port" in result.stderr and "TRADEGRAPH_API_PORT" in result.stderr
    assert not (tmp_path / "data").exists()


def test_a_second_run_on_the_same_data_dir_is_refused(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    env = operator_env(
        supervisor.data_dir,
        DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",
        REDIS_URL="redis://127.0.0.1:1/0",
    )
    result = _run("run", "--port", "0", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "already running" in result.stderr and str(supervisor.data_dir) in result.stderr
    assert supervisor.proc is not None and supervisor.proc.poll() is None


async def _admin_and_balance(database_url: str, email: str) -> tuple[asyncpg.Record, Decimal]:
    connection = await asyncpg.connect(plain_url(database_url))
    try:
        user = await connection.fetchrow("SELECT * FROM users WHERE email = $1", email)
        assert user is not None
        available = await connection.fetchval(
            "SELECT available FROM balances WHERE user_id = $1 AND asset = 'USDT'", user["id"]
        )
        return user, available
    finally:
        await connection.close()


def test_operator_commands_from_another_folder_reach_the_running_platform(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "somewhere-else"
    elsewhere.mkdir()
    env = operator_env(supervisor.data_dir)
    created = _run(
        "create-admin",
        "--email",
        "ops@example.com",
        "--username",
        "ops",
        "--password",
        "ops-password",
        env=env,
        cwd=elsewhere,
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("admin ops@example.com (ops) (id ")
    user_id = re.search(r"\(id (\d+)\)", created.stdout)
    assert user_id is not None
    deposit = _run(
        "deposit",
        "--user",
        user_id[1],
        "--asset",
        "usdt",
        "--amount",
        "100.5",
        env=env,
        cwd=elsewhere,
    )
    assert deposit.returncode == 0, deposit.stderr
    assert deposit.stdout == f"user {user_id[1]} USDT: available 100.5, locked 0\n"
    withdraw = _run(
        "withdraw",
        "--user",
        user_id[1],
        "--asset",
        "USDT",
        "--amount",
        "0.5",
        env=env,
        cwd=elsewhere,
    )
    assert withdraw.returncode == 0, withdraw.stderr
    migrate = _run("migrate", env=env, cwd=elsewhere)
    assert (migrate.returncode, migrate.stdout) == (0, "migrations at head\n"), migrate.stderr

    assert supervisor.settings.database_url
    user, available = asyncio.run(
        _admin_and_balance(supervisor.settings.database_url, "ops@example.com")
    )
    assert (user["role"], user["kyc_status"], user["username"]) == ("admin", "approved", "ops")
    assert available == Decimal("100")
    assert sorted(p.name for p in elsewhere.iterdir()) == []  # nothing made where it ran
    assert sorted(p.name for p in supervisor.data_dir.iterdir()) == ["endpoints.json"]
