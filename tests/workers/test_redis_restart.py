"""A Redis restarted under a running worker - with its data, then without - is survived.

The test has its own redis-server (killed and started again on the same port), its own
database and its own worker process, so nothing else of the session is disturbed."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app import wire
from app.config import Environment, Settings
from app.kit import migrate
from app.kit.bus import CommandBus, CommandTimeout
from app.kit.commands import dispatch
from app.kit.db import plain_url
from app.kit.errors import Problem
from app.kit.redis import Keys, create_redis
from tests.support.exchange import cached_levels, check_invariants, create_user
from tests.support.processes import Platform, RedisServer, free_port

pytestmark = pytest.mark.e2e


async def test_the_worker_and_the_bus_survive_redis_restarts_with_and_without_data(
    scratch_database: str, tmp_path: Path
) -> None:
    await asyncio.to_thread(migrate.upgrade, scratch_database)
    server = RedisServer(tmp_path / "redis")
    server.start()
    settings = Settings(
        env=Environment.TEST,
        database_url=scratch_database,
        redis_url=server.url,
        redis_prefix="restart:",
        jwt_secret="test-secret-" + "x" * 32,
        worker_metrics_port=free_port(),
    )
    keys = Keys(settings.redis_prefix)
    platform = Platform(settings=settings, log_dir=tmp_path)
    redis = create_redis(server.url)
    bus = CommandBus(redis, keys)
    db = await asyncpg.connect(plain_url(scratch_database))
    answered: dict[str, dict[str, Any]] = {}
    counter = iter(range(1_000_000))

    async def ask(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A well-behaved client: on a timeout or an unreachable bus, retry, same id."""
        command_id = f"restart-{next(counter)}"
        deadline = time.monotonic() + 15
        while True:
            try:
                reply = await bus.submit(kind, payload, command_id=command_id, timeout=1.0)
                answered[command_id] = reply
                return reply
            except CommandTimeout:
                assert time.monotonic() < deadline, f"{command_id} never answered"
                await asyncio.sleep(0.1)

    async def book() -> list[dict[str, Any]]:
        return await cached_levels(redis, keys, "ETH-USDT", "bids")

    try:
        alice, bob = await create_user(db), await create_user(db)
        await asyncio.to_thread(platform.start_worker)
        worker = platform.procs["worker"]
        assert (await ask("deposit", {"user_id": alice, "asset": "USDT", "amount": "1000"}))["ok"]
        order = {"user_id": alice, "symbol": "ETH-USDT", "side": "BUY", "type": "LIMIT"}
        assert (await ask("place", {**order, "quantity": "1", "price": "100"}))["ok"]
        before = await book()
        assert [level["price"] for level in before] == ["100"]

        # A load of deposits keeps coming while Redis goes away and comes back.
        stop = asyncio.Event()

        async def load() -> None:
            while not stop.is_set():
                await ask("deposit", {"user_id": bob, "asset": "USDT", "amount": "1"})

        loader = asyncio.create_task(load())
        await asyncio.sleep(0.3)

        # 1. Killed, and started again with its data (append-only file).
        server.kill()
        down = await dispatch(
            bus, wire.Deposit(user_id=alice, asset="USDT", amount="1"), timeout=0.5
        )
        assert isinstance(down, Problem) and down.code == "TIMEOUT"  # typed, not a crash
        await asyncio.sleep(0.5)
        server.start()
        assert (await ask("place", {**order, "quantity": "1", "price": "101"}))["ok"]
        assert worker.poll() is None
        assert [level["price"] for level in await book()] == ["100", "101"]

        # 2. Killed, and started again empty: no stream, no group, no book cache.
        server.kill(lose_data=True)
        await asyncio.sleep(0.3)
        server.start()
        assert (await ask("place", {**order, "quantity": "1", "price": "102"}))["ok"]
        assert worker.poll() is None
        # The worker made its group again and rebuilt the cache from its books.
        assert [level["price"] for level in await book()] == ["100", "101", "102"]
        assert await redis.get(keys.book_sequence("ETH-USDT")) == "3"
        await asyncio.sleep(0.3)
        stop.set()
        await loader
    finally:
        stop_worker_code = None
        if "worker" in platform.procs:
            proc = platform.procs["worker"]
            platform.stop("worker")
            stop_worker_code = proc.returncode
        await bus.close()
        await redis.aclose()
        server.kill()

    assert stop_worker_code == 0
    # Every answer a client got is committed, as given; nothing was applied twice.
    stored = {
        row["command_id"]: json.loads(row["result"])
        for row in await db.fetch(
            "SELECT command_id, result FROM processed_commands WHERE command_id LIKE 'restart-%'"
        )
    }
    assert stored == answered
    deposits = sum(
        1 for reply in answered.values() if (reply["balance"] or {}).get("user_id") == bob
    )
    assert deposits > 5
    assert (
        await db.fetchval(
            "SELECT available FROM balances WHERE user_id = $1 AND asset = 'USDT'", bob
        )
        == deposits
    )
    await check_invariants(db)
    await db.close()
