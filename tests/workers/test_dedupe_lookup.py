"""The dedupe lookup that fails for a batch falls back to one id at a time."""

from __future__ import annotations

import asyncpg
import msgspec

from app import wire
from app.config import Settings
from app.kit.db import plain_url
from workers.matching.worker import MatchingWorker


async def test_an_id_whose_lookup_fails_is_isolated_and_the_others_are_found(
    settings: Settings, db: asyncpg.Connection
) -> None:
    await db.execute(
        "INSERT INTO processed_commands (command_id, kind, result) "
        "VALUES ('lookup-known', 'resume', '{\"ok\": true}')"
    )
    worker = MatchingWorker(settings)
    worker.conn = await asyncpg.connect(plain_url(settings.database_url or ""))
    try:
        # A NUL is refused by PostgreSQL: the codec never lets one through, but if an id
        # ever made the lookup fail, only that id would be written off.
        found, failed = await worker._committed(["lookup-known", "lookup-new", "bad\x00id"])
        # The stored reply is passed on as stored (undecoded).
        assert {i: msgspec.json.decode(wire.encode(reply)) for i, reply in found.items()} == {
            "lookup-known": {"ok": True}
        }
        assert failed == {"bad\x00id"}
        assert await worker._committed(["lookup-new"]) == ({}, set())
    finally:
        await worker.conn.close()
        await worker.redis.aclose()
