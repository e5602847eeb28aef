"""No stream entry, however malformed, stops or wedges matching.

Entries are written straight to the stream (XADD), as nothing but the API should, each
between two good commands in the same batch: the bad one is answered, the good ones are
applied, and the worker and its heartbeat stay up."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from app.config import Settings
from app.kit.bus import CommandBus
from app.kit.redis import Keys
from tests.support.exchange import balance, check_invariants
from tests.support.processes import Platform
from tests.workers.conftest import NewTrader
from workers.matching.codec import printable

pytestmark = pytest.mark.e2e

D = Decimal
Fields = dict[str, str | bytes]


def poisons(user: int) -> list[tuple[str, Fields, str | None]]:
    """(name, stream entry fields but the reply channel, the field refused or None)."""

    def entry(kind: str | bytes, payload: Any, **extra: str | bytes) -> Fields:
        text = payload if isinstance(payload, str | bytes) else json.dumps(payload)
        return {"kind": kind, "payload": text, **extra}

    order = {
        "user_id": user,
        "symbol": "ETH-USDT",
        "side": "BUY",
        "type": "LIMIT",
        "quantity": "0.1",
        "price": "100",
    }
    return [
        ("place NUL symbol", entry("place", {**order, "symbol": "ETH\u0000-USDT"}), "symbol"),
        ("place unicode symbol", entry("place", {**order, "symbol": "ETH-USDŢ"}), "symbol"),
        (
            "place NUL client order id",
            entry("place", {**order, "client_order_id": "a\u0000"}),
            "client_order_id",
        ),
        ("place long price", entry("place", {**order, "price": "1" * 5000}), "price"),
        ("place float quantity", entry("place", {**order, "quantity": 0.1}), "quantity"),
        ("place post_only string", entry("place", {**order, "post_only": "yes"}), "post_only"),
        ("place side number", entry("place", {**order, "side": 1}), "side"),
        ("place huge user id", entry("place", {**order, "user_id": 2**70}), "user_id"),
        (
            "amend huge order id",
            entry("amend", {"user_id": user, "order_id": 2**64, "quantity": "1"}),
            "order_id",
        ),
        ("amend user id string", entry("amend", {"user_id": str(user), "order_id": 1}), "user_id"),
        (
            "cancel client order id 65 chars",
            entry("cancel", {"user_id": user, "client_order_id": "x" * 65}),
            "client_order_id",
        ),
        (
            "cancel_all long symbol",
            entry("cancel_all", {"user_id": user, "symbol": "X" * 5000}),
            "symbol",
        ),
        (
            "deposit NUL asset",
            entry("deposit", {"user_id": user, "asset": "US\u0000DT", "amount": "1"}),
            "asset",
        ),
        (
            "deposit non-ASCII asset",
            entry("deposit", {"user_id": user, "asset": "ǆ", "amount": "1"}),
            "asset",
        ),
        (
            "deposit NUL idempotency key",
            entry(
                "deposit",
                {"user_id": user, "asset": "USDT", "amount": "1"},
                id="deposit:k\u0000",
            ),
            "id",
        ),
        (
            "withdraw 5000-digit amount",
            entry("withdraw", {"user_id": user, "asset": "USDT", "amount": "9" * 5000}),
            "amount",
        ),
        (
            "withdraw above the record",
            entry("withdraw", {"user_id": user, "asset": "USDT", "amount": "9" * 39}),
            "amount",
        ),
        ("halt NUL reason", entry("halt", {"symbol": "ETH-USDT", "reason": "a\u0000b"}), "reason"),
        ("halt long reason", entry("halt", {"symbol": "ETH-USDT", "reason": "r" * 501}), "reason"),
        (
            "halt cancel_orders string",
            entry("halt", {"symbol": "ETH-USDT", "cancel_orders": "no"}),
            "cancel_orders",
        ),
        ("resume symbol number", entry("resume", {"symbol": 42}), "symbol"),
        ("set_fee_tier huge", entry("set_fee_tier", {"user_id": user, "tier": 2**40}), "tier"),
        ("set_fee_tier bool", entry("set_fee_tier", {"user_id": user, "tier": True}), "tier"),
        ("unknown kind", entry("explode", {}), None),
        ("NUL kind", entry("\u0000" * 100, {}), None),
        ("non-JSON payload", entry("deposit", "{not json"), None),
        ("non-object payload", entry("deposit", "[1, 2]"), None),
        ("deeply nested payload", entry("deposit", "[" * 100_000), None),
        (
            "lone surrogate escape",
            entry("halt", '{"symbol": "ETH-USDT", "reason": "\\ud800"}'),
            None,
        ),
        ("bytes not UTF-8", entry(b"halt", b'{"symbol": "ETH-USDT", "reason": "\xff"}'), None),
        ("kind not UTF-8", entry(b"\xffplace", {}), None),
        ("id with NUL", entry("resume", {"symbol": "BTC-USDT"}, id="a\u0000b"), "id"),
        ("id too long", entry("resume", {"symbol": "BTC-USDT"}, id="i" * 65), "id"),
        ("id not UTF-8", entry("resume", {"symbol": "BTC-USDT"}, id=b"id\xff"), "id"),
        ("id empty", entry("resume", {"symbol": "BTC-USDT"}, id=""), "id"),
    ]


@pytest.fixture
async def raw(settings: Settings) -> AsyncIterator[Redis]:
    """A client that writes bytes as they are (no decoding)."""
    client = Redis.from_url(settings.redis_url or "")
    yield client
    await client.aclose()


async def replies_on(pubsub: PubSub, count: int, seconds: float = 15.0) -> dict[str, Any]:
    found: dict[str, Any] = {}
    deadline = time.monotonic() + seconds
    while len(found) < count and time.monotonic() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is not None:
            for reply in json.loads(message["data"])["replies"]:
                found[reply["id"]] = reply["result"]
    return found


async def test_a_bad_entry_of_every_kind_is_answered_and_the_commands_around_it_applied(
    platform: Platform,
    bus: CommandBus,
    trader: NewTrader,
    db: asyncpg.Connection,
    raw: Redis,
    settings: Settings,
) -> None:
    alice = await trader()
    keys = Keys(settings.redis_prefix)
    channel = keys.replies(f"poison-{uuid.uuid4().hex[:8]}")
    cases = poisons(alice)
    pubsub = raw.pubsub()
    await pubsub.subscribe(channel)
    run = uuid.uuid4().hex[:8]
    good: dict[Any, Any] = {
        "kind": "deposit",
        "payload": json.dumps({"user_id": alice, "asset": "USDT", "amount": "1"}),
    }
    try:
        # Every case between two good deposits, all in one pipeline: the worker reads
        # them in the same batch(es).
        async with raw.pipeline(transaction=False) as pipe:
            for n, (_name, fields, _) in enumerate(cases):
                pipe.xadd(
                    keys.command_stream(), {"id": f"good-{run}-{n}a", **good, "reply_to": channel}
                )
                bad: dict[Any, Any] = {"id": f"bad-{run}-{n}", **fields, "reply_to": channel}
                pipe.xadd(keys.command_stream(), bad)
                pipe.xadd(
                    keys.command_stream(), {"id": f"good-{run}-{n}b", **good, "reply_to": channel}
                )
            await pipe.execute()
        answers = await replies_on(pubsub, 3 * len(cases))
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]

    for n, (name, fields, refused_field) in enumerate(cases):
        assert answers[f"good-{run}-{n}a"]["ok"], name
        assert answers[f"good-{run}-{n}b"]["ok"], name
        sent_id = fields.get("id", f"bad-{run}-{n}")
        if isinstance(sent_id, bytes):
            sent_id = sent_id.decode(errors="surrogateescape")
        answer = answers.get(printable(sent_id))  # an id that cannot be stored is escaped
        assert answer is not None, (name, sorted(answers))
        assert answer["ok"] is False, (name, answer)
        assert answer["error"]["code"] == "INVALID_INPUT", (name, answer)
        assert answer["error"]["field"] == refused_field, (name, answer)

    # Every good deposit applied once, nothing else; no market halted.
    assert await balance(db, alice, "USDT") == (D(2 * len(cases)), D(0))
    assert await db.fetchval("SELECT count(*) FROM markets WHERE status = 'HALTED'") == 0
    assert await db.fetchval(
        "SELECT count(*) FROM processed_commands WHERE command_id LIKE $1", f"good-{run}-%"
    ) == 2 * len(cases)
    # Ids that could not be stored were never looked up or recorded; the rest were.
    assert await db.fetchval(
        "SELECT count(*) FROM processed_commands WHERE command_id LIKE $1", f"bad-{run}-%"
    ) == sum(1 for _, fields, _ in cases if "id" not in fields)
    # The worker kept running, its heartbeat is fresh and /readyz says so.
    assert platform.procs["worker"].poll() is None
    async with httpx.AsyncClient() as http:
        ready = (await http.get(f"{platform.url}/readyz")).json()
    assert ready["checks"]["worker"] == "ok", ready
    assert (await bus.submit("resume", {"symbol": "BTC-USDT"}))["ok"] is False  # not halted
    await check_invariants(db)
