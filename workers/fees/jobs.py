"""`tradegraph jobs`: the scheduled background jobs (today: the daily fee tier recompute).

A process of its own, not a task of the worker or of an API process: the job's query
reads 30 days of trades, which must not hold up matching, and API processes come in many
copies. Running it twice (two `jobs` processes, a manual `tradegraph fees recompute`) is
harmless: the job is idempotent. It runs once at start (a day missed while it was down is
caught up), then every day at ``TRADEGRAPH_FEE_RECOMPUTE_AT`` UTC; a run that fails (the
database or Redis away) is logged and retried a minute later.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import UTC, datetime

import asyncpg

from app.config import Settings
from app.kit.bus import CommandBus
from app.kit.db import plain_url
from app.kit.redis import Keys, create_redis
from workers.fees.job import Outcome, next_run, recompute

log = logging.getLogger(__name__)

RETRY_SECONDS = 60.0
WORKER_WAIT_SECONDS = 60.0


async def recompute_once(
    settings: Settings,
    *,
    users: list[int] | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109 - each command's deadline for the reply
    wait_for_worker: float = 0.0,
) -> Outcome:
    """Connect, run the fee job once, disconnect. Raises ``LookupError`` when no matching
    worker answers (its heartbeat) within ``wait_for_worker`` seconds."""
    assert settings.database_url and settings.redis_url
    redis = create_redis(settings.redis_url)
    keys = Keys(settings.redis_prefix)
    bus = CommandBus(redis, keys)
    conn = await asyncpg.connect(plain_url(settings.database_url), timeout=10)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_for_worker
        while not await redis.exists(keys.worker_heartbeat()):
            if loop.time() >= deadline:
                raise LookupError("no matching worker is running (its heartbeat is missing)")
            await asyncio.sleep(0.5)
        return await recompute(conn, bus, users=users, timeout=timeout)
    finally:
        await conn.close()
        await bus.close()
        await redis.aclose()


async def _loop(settings: Settings, stopping: asyncio.Event) -> None:
    when = datetime.now(UTC)  # once at start
    while not stopping.is_set():
        delay = max(0.0, (when - datetime.now(UTC)).total_seconds())
        try:
            await asyncio.wait_for(stopping.wait(), delay)
            return
        except TimeoutError:
            pass
        try:
            await recompute_once(settings, wait_for_worker=WORKER_WAIT_SECONDS)
        except Exception as exc:  # the database or Redis away, no worker yet: try again
            log.warning("the fee tier job failed (%r); retrying in %gs", exc, RETRY_SECONDS)
            when = datetime.fromtimestamp(datetime.now(UTC).timestamp() + RETRY_SECONDS, UTC)
            continue
        when = next_run(datetime.now(UTC), settings.fee_recompute_at)
        log.info("next fee tier recompute at %s", when.isoformat())


def run_jobs(settings: Settings) -> int:
    """Entry point of `tradegraph jobs`: run until SIGTERM / SIGINT, then exit 0."""

    async def main() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await _loop(settings, stopping)

    asyncio.run(main())
    log.info("jobs stopped")
    return 0
