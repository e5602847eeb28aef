"""A worker that cannot make progress says so, and SIGTERM still ends it in bounded time."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from app.config import Settings
from app.kit.bus import CommandBus
from app.kit.db import plain_url
from app.kit.redis import Keys
from tests.support.exchange import balance, deposit
from tests.support.processes import Platform
from tests.workers.conftest import NewTrader
from workers.matching.worker import (
    EXIT_SHUTDOWN_TIMEOUT,
    HEARTBEAT_TTL,
    SHUTDOWN_SECONDS,
    STALL_SECONDS,
)

pytestmark = pytest.mark.e2e


async def test_a_wedged_commit_lets_the_heartbeat_lapse_and_sigterm_still_exits(
    platform: Platform,
    bus: CommandBus,
    trader: NewTrader,
    db: asyncpg.Connection,
    redis: Redis,
    settings: Settings,
) -> None:
    alice = await trader()
    await deposit(bus, alice, "USDT", "1")
    heartbeat = Keys(settings.redis_prefix).worker_heartbeat()
    blocker = await asyncpg.connect(plain_url(settings.database_url or ""))
    try:
        # Hold alice's balance row: the batch depositing to her cannot commit.
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("SELECT 1 FROM balances WHERE user_id = $1 FOR UPDATE", alice)
        stuck = asyncio.create_task(
            bus.submit(
                "deposit",
                {"user_id": alice, "asset": "USDT", "amount": "1"},
                command_id=f"wedged-{alice}",
                timeout=60,
            )
        )
        # The matcher loop keeps turning, but the heartbeat is progress, not liveness.
        started = time.monotonic()
        while await redis.exists(heartbeat):
            assert time.monotonic() - started < STALL_SECONDS + HEARTBEAT_TTL + 3
            await asyncio.sleep(0.1)
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{platform.url}/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["worker"].startswith("down")
        assert not stuck.done()

        # SIGTERM: the batch in flight cannot finish; the worker gives up on it in time.
        worker = platform.procs.pop("worker")
        stopping = time.monotonic()
        worker.terminate()
        code = await asyncio.to_thread(worker.wait, SHUTDOWN_SECONDS + 5)
        assert code == EXIT_SHUTDOWN_TIMEOUT
        assert time.monotonic() - stopping < SHUTDOWN_SECONDS + 4
        await transaction.rollback()
    finally:
        await blocker.close()
        if "worker" not in platform.procs:
            await asyncio.to_thread(platform.start_worker)

    # The unacknowledged entry is run by the next worker, once.
    reply = await stuck
    assert reply["ok"] and reply["balance"]["available"] == "2", reply
    assert await balance(db, alice, "USDT") == (Decimal(2), Decimal(0))
    assert (await deposit(bus, alice, "USDT", "1"))["balance"]["available"] == "3"
