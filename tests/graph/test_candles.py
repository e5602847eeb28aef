"""Candles through the API: the query's answer and refusals, and the subscription's open
candle, updated by a trade and rolled over at the interval's end (by moving the API's
injectable clock to the boundary, so no test waits for a real minute)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from gql.transport.websockets import WebsocketsTransport
from starlette.applications import Starlette
from starlette.requests import Request

from app.kit.bus import CommandBus
from app.kit.db import plain_url
from app.kit.money import plain_text
from app.markets.candles import SystemClock
from app.services import Services
from graph.context import Context
from graph.schema import schema
from tests.support.api import asgi_client, graphql
from tests.support.exchange import clear_books, create_user, deposit, place
from tests.support.live import Watch
from tests.support.processes import Platform

pytestmark = pytest.mark.e2e

CANDLES = """query($s: String!, $i: CandleInterval!, $from: DateTime, $to: DateTime,
  $first: Int) {
  candles(symbol: $s, interval: $i, from: $from, to: $to, first: $first) {
    symbol interval start end open high low close volume quoteVolume trades } }"""


@pytest.fixture
async def db(services: Services) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(plain_url(services.settings.database_url or ""))
    yield conn
    await conn.close()


async def trade(
    bus: CommandBus, db: asyncpg.Connection, price: str, symbol: str = "ETH-USDT"
) -> dict[str, Any]:
    """One trade of 0.1 of the base at ``price`` between two new traders; the fill."""
    maker, taker = await create_user(db), await create_user(db)
    await deposit(bus, maker, symbol.split("-")[0], "1")
    await deposit(bus, taker, "USDT", "10000")
    assert (await place(bus, maker, symbol, "SELL", "0.1", price))["ok"]
    taken = await place(bus, taker, symbol, "BUY", "0.1", price)
    assert taken["ok"], taken
    (fill,) = taken["fills"]
    fill_: dict[str, Any] = fill
    return fill_


async def stored_minute(db: asyncpg.Connection, trade_id: int) -> dict[str, Any]:
    """The stored 1m candle holding a trade, as the API spells it."""
    row = await db.fetchrow(
        """SELECT c.* FROM trades t JOIN candles_1m c ON c.symbol = t.symbol
           AND c.bucket = date_bin('1 minute', t.executed_at, TIMESTAMPTZ '2000-01-01Z')
           WHERE t.id = $1""",
        trade_id,
    )
    assert row is not None
    return {
        "start": row["bucket"].astimezone(UTC).isoformat(),
        "open": plain(row["open"]),
        "high": plain(row["high"]),
        "low": plain(row["low"]),
        "close": plain(row["close"]),
        "volume": plain(row["volume"]),
        "quoteVolume": plain(row["quote_volume"]),
        "trades": row["trades"],
    }


def plain(value: Any) -> str:
    return plain_text(value)


async def test_the_query_answers_the_stored_minutes_as_decimal_strings(
    app: Starlette, bus: CommandBus, db: asyncpg.Connection
) -> None:
    fill = await trade(bus, db, "1234.5")
    minute = await stored_minute(db, fill["id"])
    since = (datetime.now(UTC) - timedelta(minutes=3)).isoformat()
    async with asgi_client(app) as client:
        body = await graphql(client, CANDLES, {"s": "eth-usdt", "i": "M1", "from": since})
    assert "errors" not in body, body
    candles = body["data"]["candles"]
    mine = [c for c in candles if c["start"] == minute["start"]]
    assert mine == [
        {
            **minute,
            "symbol": "ETH-USDT",
            "interval": "M1",
            "end": (datetime.fromisoformat(minute["start"]) + timedelta(minutes=1)).isoformat(),
        }
    ]
    starts = [datetime.fromisoformat(c["start"]) for c in candles]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(starts))
    async with asgi_client(app) as client:
        hourly = await graphql(client, CANDLES, {"s": "ETH-USDT", "i": "H1", "first": 2})
    *_, this_hour = hourly["data"]["candles"]  # the hour before too, if ETH traded then
    assert len(hourly["data"]["candles"]) <= 2
    assert (
        this_hour["start"]
        == datetime.now(UTC).replace(minute=0, second=0, microsecond=0).isoformat()
    )
    assert (this_hour["interval"], this_hour["close"]) == ("H1", "1234.5")
    await clear_books(bus)


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            {"s": "NOPE-USDT", "i": "M1"},
            ("NOT_FOUND", "symbol", "no market 'NOPE-USDT'"),
        ),
        (
            {"s": "BTC-USDT", "i": "M1", "first": 0},
            ("INVALID_INPUT", "first", "`first` must be between 1 and 1000"),
        ),
        (
            {"s": "BTC-USDT", "i": "M1", "first": 1001},
            ("INVALID_INPUT", "first", "`first` must be between 1 and 1000"),
        ),
        (
            {
                "s": "BTC-USDT",
                "i": "H1",
                "from": "2026-01-02T00:00:00Z",
                "to": "2026-01-01T00:00:00Z",
            },
            ("INVALID_INPUT", "from", "`from` must be before `to`"),
        ),
        (
            {
                "s": "BTC-USDT",
                "i": "M1",
                "from": "2026-01-01T00:00:00Z",
                "to": "2026-01-02T00:00:00Z",
            },
            (
                "INVALID_INPUT",
                "from",
                "too many candles: that range holds 1440 1m candles, at most 1000 "
                "(narrow it, or use a longer interval)",
            ),
        ),
    ],
)
async def test_refusals_are_typed_top_level_errors(
    app: Starlette, variables: dict[str, Any], expected: tuple[str, str, str]
) -> None:
    async with asgi_client(app) as client:
        body = await graphql(client, CANDLES, variables)
    (error,) = body["errors"]
    assert (error["extensions"]["code"], error["extensions"]["argument"], error["message"]) == (
        expected
    )
    assert body["data"] is None


async def test_a_bad_interval_or_time_is_refused_before_anything_runs(app: Starlette) -> None:
    async with asgi_client(app) as client:
        interval = await graphql(client, CANDLES, {"s": "BTC-USDT", "i": "M2"})
        moment = await graphql(client, CANDLES, {"s": "BTC-USDT", "i": "M1", "from": "yesterday"})
    for body in (interval, moment):
        (error,) = body["errors"]
        assert error["extensions"]["code"] == "INVALID_INPUT"
        assert body["data"] is None


class JumpingClock(SystemClock):
    """The real clock, plus an offset a test may move forward (waking the timers)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    async def sleep_until(self, moment: datetime) -> None:
        # Polled: the offset may jump while it sleeps.
        while self.now() < moment:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def operation_context(services: Services) -> Context:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/graphql",
        "headers": [],
        "query_string": b"",
        "client": ("10.77.0.1", 40000),
        "server": ("testserver", 80),
    }
    return Context(request=Request(scope), response=None, services=services)


async def next_candle(stream: Any) -> dict[str, Any]:
    result = await asyncio.wait_for(anext(stream), 10)
    assert not result.errors, result.errors
    candle: dict[str, Any] = result.data["candles"]
    return candle


async def test_the_subscription_updates_the_open_candle_and_rolls_over_at_its_end(
    app: Starlette, bus: CommandBus, db: asyncpg.Connection
) -> None:
    services: Services = app.state.services
    clock = JumpingClock()
    services.candles.clock = clock
    await trade(bus, db, "1500")  # so the market has a candle now
    stream: Any = await schema.subscribe(
        'subscription { candles(symbol: "ETH-USDT", interval: M1) { '
        "start end open high low close volume quoteVolume trades } }",
        context_value=operation_context(services),
    )
    try:
        first = await next_candle(stream)
        assert datetime.fromisoformat(first["start"]) <= clock.now()
        assert clock.now() < datetime.fromisoformat(first["end"])
        fill = await trade(bus, db, "1510")
        # The open candle with that trade (a real minute may have ended in between: then
        # the candle of the next minute, opened by the trade, or the rolled-over one first).
        expected = await stored_minute(db, fill["id"])
        for _ in range(5):
            update = await next_candle(stream)
            if update["start"] == expected["start"] and update["trades"] == expected["trades"]:
                break
        assert {k: update[k] for k in expected} == expected
        assert update["close"] == "1510"
        # The interval ends: a new, empty candle flat at the close, with no trade.
        clock.offset = datetime.fromisoformat(update["end"]) - datetime.now(UTC)
        rolled = await next_candle(stream)
        assert rolled == {
            "start": update["end"],
            "end": (datetime.fromisoformat(update["end"]) + timedelta(minutes=1)).isoformat(),
            "open": "1510",
            "high": "1510",
            "low": "1510",
            "close": "1510",
            "volume": "0",
            "quoteVolume": "0",
            "trades": 0,
        }
    finally:
        await stream.aclose()
        services.candles.clock = SystemClock()
        await clear_books(bus)


async def test_the_subscription_refuses_an_unknown_market(app: Starlette) -> None:
    services: Services = app.state.services
    stream: Any = await schema.subscribe(
        'subscription { candles(symbol: "NOPE-USDT", interval: H1) { start } }',
        context_value=operation_context(services),
    )
    result = await asyncio.wait_for(anext(stream), 10)
    (error,) = result.errors
    assert (error.extensions or {}).get("code") == "NOT_FOUND"
    await stream.aclose()


def readme_blocks() -> tuple[str, str]:
    """The quick start's helpers (its first block) and the Candles section's example."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    quickstart = readme.split("\n## Quick start\n", 1)[1]
    candles = readme.split("\n## Candles\n", 1)[1].split("\n## ", 1)[0]
    (helpers,) = [
        block
        for block in re.findall(r"^```sh\n(.*?)^```$", quickstart, re.S | re.M)
        if "gql() {" in block
    ]
    (example,) = re.findall(r"^```sh\n(.*?)^```$", candles, re.S | re.M)
    return helpers, example


async def test_the_readme_candles_example_runs_as_written(
    platform: Platform, bus: CommandBus, db: asyncpg.Connection
) -> None:
    await trade(bus, db, "30100", "BTC-USDT")  # so today has a BTC-USDT candle
    helpers, example = readme_blocks()
    result = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-c", f"set -e -o pipefail\n{helpers}\n{example}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TRADEGRAPH_URL": platform.url},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(answers) == 4  # the markets (the helpers' own check), then the three
    for answer in answers[1:]:
        assert "errors" not in answer, answer
        assert answer["data"]["candles"], answer
    assert answers[3]["data"]["candles"][0]["close"] == "30100"
    await clear_books(bus)


async def test_the_subscription_over_a_websocket_of_the_real_api(
    platform: Platform, bus: CommandBus, db: asyncpg.Connection
) -> None:
    await trade(bus, db, "1700")
    watch = Watch(
        platform,
        'subscription { candles(symbol: "ETH-USDT", interval: H1) { start close trades } }',
        None,
        WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL,
    ).start()
    try:
        first = (await watch.wait_for(1))[0]
        assert first["candles"]["close"] == "1700"
        fill = await trade(bus, db, "1720")
        async with asyncio.timeout(10):
            while not any(i["candles"]["close"] == "1720" for i in watch.items):
                await watch.wait_for(len(watch.items) + 1)
        last = watch.items[-1]["candles"]
        hour = await db.fetchval(
            "SELECT sum(c.trades) FROM candles_1m c WHERE c.symbol = 'ETH-USDT' AND "
            "c.bucket >= date_bin('1 hour', (SELECT executed_at FROM trades WHERE id = $1), "
            "TIMESTAMPTZ '2000-01-01Z') AND c.bucket <= (SELECT executed_at FROM trades "
            "WHERE id = $1)",
            fill["id"],
        )
        assert (last["close"], last["trades"]) == ("1720", hour)
    finally:
        await watch.stop()
        await clear_books(bus)
