"""`tradegraph risk-monitor`: the manipulation detector as its own process.

It reads the worker's activity stream (one entry per committed batch, after the commit)
through a consumer group, so matching never waits for it. Each batch of entries is run
through the rules (:mod:`workers.risk_monitor.rules`); the findings are inserted into
``risk_events`` in one transaction with ``ON CONFLICT DO NOTHING`` on the unique
``metadata->>'dedupe_key'`` (migration 0009), the entries are acknowledged only after that
commit, and a :class:`app.wire.RiskAlert` is published for each row actually inserted.

On start it rebuilds its windows by re-reading the stream back to the longest window
(XRANGE) up to what the group had delivered: the rules measure time on the activity's own
times, so a replay finds the same findings with the same keys, the database drops the ones
already stored, and entries a crash left unacknowledged are reported then, once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from typing import Any, cast

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from app import wire
from app.config import Settings
from app.kit.db import plain_url
from app.kit.redis import Keys, create_redis
from workers.risk_monitor.rules import Detector, Finding

log = logging.getLogger(__name__)

GROUP = "risk-monitor"
CONSUMER = "risk-monitor"
READ_COUNT = 500
BLOCK_MS = 1000

INSERT = """
INSERT INTO risk_events (user_id, event_type, severity, description, metadata)
VALUES ($1, $2, $3, $4, $5::jsonb)
ON CONFLICT ((metadata->>'dedupe_key')) WHERE metadata ? 'dedupe_key' DO NOTHING
RETURNING id
"""


def _entries(data: list[tuple[str, dict[str, str]]]) -> list[tuple[str, wire.Activity]]:
    out = []
    for entry_id, fields in data:
        try:
            out.append((entry_id, wire.decode_activity(fields["data"])))
        except Exception:  # a malformed entry is skipped, never a crash loop
            log.exception("skipping unreadable activity entry %s", entry_id)
    return out


class Monitor:
    def __init__(self, settings: Settings, redis: Redis, conn: asyncpg.Connection) -> None:
        self.redis, self.conn = redis, conn
        self.keys = Keys(settings.redis_prefix)
        self.stream = self.keys.activity_stream()
        self.detector = Detector(settings)

    async def store(self, findings: list[Finding]) -> list[tuple[int, Finding]]:
        """Insert in one transaction; the rows actually inserted (new dedupe keys)."""
        inserted: list[tuple[int, Finding]] = []
        if not findings:
            return inserted
        async with self.conn.transaction():
            for finding in findings:
                row_id = await self.conn.fetchval(
                    INSERT,
                    finding.user_id,
                    finding.event_type.value,
                    finding.severity.value,
                    finding.description,
                    json.dumps(finding.metadata),
                )
                if row_id is not None:
                    inserted.append((row_id, finding))
        return inserted

    async def alert(self, inserted: list[tuple[int, Finding]]) -> None:
        if not inserted:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for row_id, finding in inserted:
                alert = wire.RiskAlert(
                    id=row_id,
                    user_id=finding.user_id,
                    event_type=finding.event_type,
                    severity=finding.severity,
                    description=finding.description,
                    symbol=finding.metadata.get("symbol"),
                    rule=finding.rule,
                )
                pipe.publish(self.keys.risk_channel(), wire.encode(alert))
            await pipe.execute()

    async def handle(self, entries: list[tuple[str, wire.Activity]]) -> None:
        findings: list[Finding] = []
        for entry_id, activity in entries:
            findings += self.detector.feed(entry_id, activity)
        inserted = await self.store(findings)
        await self.alert(inserted)

    async def start(self) -> None:
        """Create the group (from the stream's start), then replay back to the longest
        window up to what the group has delivered, and acknowledge what was pending."""
        try:
            await self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        groups = await self.redis.xinfo_groups(self.stream)
        delivered = str(next(g["last-delivered-id"] for g in groups if g["name"] == GROUP))
        if delivered in ("0-0", "0"):
            return
        since = int((time.time() - self.detector.longest_window) * 1000)
        start = f"{max(since, 0)}-0"
        while True:
            data: list[Any] = cast(
                list[Any], await self.redis.xrange(self.stream, start, delivered, count=READ_COUNT)
            )
            if not data:
                break
            await self.handle(_entries(data))
            last = data[-1][0]
            if last == delivered:
                break
            ms, _, seq = last.partition("-")
            start = f"{ms}-{int(seq) + 1}"
        pending: list[Any] = cast(
            list[Any],
            await self.redis.xreadgroup(GROUP, CONSUMER, {self.stream: "0"}, count=10**6),
        )
        ids = [entry_id for _, rows in pending for entry_id, _ in rows]
        if ids:
            await self.redis.xack(self.stream, GROUP, *ids)

    async def run(self, stopping: asyncio.Event) -> None:
        await self.start()
        log.info("risk monitor reading %s", self.stream)
        while not stopping.is_set():
            reply: list[Any] | None = cast(
                list[Any] | None,
                await self.redis.xreadgroup(
                    GROUP, CONSUMER, {self.stream: ">"}, count=READ_COUNT, block=BLOCK_MS
                ),
            )
            for _, rows in reply or []:
                await self.handle(_entries(rows))
                await self.redis.xack(self.stream, GROUP, *[entry_id for entry_id, _ in rows])


async def monitor(settings: Settings, stopping: asyncio.Event) -> None:
    assert settings.database_url and settings.redis_url
    redis = create_redis(settings.redis_url)
    conn = await asyncpg.connect(plain_url(settings.database_url), timeout=10)
    try:
        await Monitor(settings, redis, conn).run(stopping)
    finally:
        await conn.close()
        await redis.aclose()


def run_risk_monitor(settings: Settings) -> int:
    """Entry point of `tradegraph risk-monitor`: run until SIGTERM / SIGINT, then exit 0."""

    async def main() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await monitor(settings, stopping)

    asyncio.run(main())
    log.info("risk monitor stopped")
    return 0
