"""`ticker` and `tickers` through the ASGI app with a controlled clock, the `ticker`
subscription over a real WebSocket to the real API and worker, and the NOT_FOUND error an
unknown symbol gets on every market-data query and subscription."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from starlette.applications import Starlette
from websockets.asyncio.client import connect

from app.config import Settings
from app.kit.bus import CommandBus
from app.kit.db import plain_url
from app.services import Services
from tests.support.api import asgi_client, graphql
from tests.support.exchange import clear_books, create_user, deposit, place
from tests.support.live import Watch, subscribed
from tests.support.processes import Platform
from tests.support.trades import SyntheticTrade, SyntheticTrades, synthetic_trades

NOW = datetime(2001, 1, 2, tzinfo=UTC)
HOUR = timedelta(hours=1)

FIGURES = """symbol lastPrice openPrice change changePercent high low baseVolume quoteVolume
  tradeCount windowStart windowEnd"""


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(plain_url(settings.database_url or ""))
    yield conn
    await conn.close()


@pytest.fixture
async def trades(db: asyncpg.Connection) -> AsyncIterator[SyntheticTrades]:
    async with synthetic_trades(db) as handle:
        yield handle


@pytest.fixture
def in_2001(app: Starlette) -> Iterator[None]:
    """The app's ticker clock stopped at NOW (the real trades of other tests are later)."""
    tickers = app.state.services.tickers
    real = tickers.clock
    tickers.clock = lambda: NOW
    yield
    tickers.clock = real


async def test_ticker_and_tickers_after_a_day_of_trades(
    app: Starlette, trades: SyntheticTrades, in_2001: None
) -> None:
    await trades.add(
        "BTC-USDT",
        SyntheticTrade(NOW - 30 * HOUR, "30000", "1"),  # the price 24 h ago
        SyntheticTrade(NOW - 20 * HOUR, "31000", "0.5"),
        SyntheticTrade(NOW - 2 * HOUR, "29000.5", "0.25"),
        SyntheticTrade(NOW - HOUR, "29400.25", "0.1", "SELL"),
    )
    async with asgi_client(app) as client:
        one = await graphql(client, f'{{ ticker(symbol: "btc-usdt") {{ {FIGURES} }} }}')
        every = await graphql(client, f"{{ tickers {{ {FIGURES} }} }}")
    btc = {
        "symbol": "BTC-USDT",
        "lastPrice": "29400.25",
        "openPrice": "30000",
        "change": "-599.75",
        "changePercent": "-2",  # -1.999166...% -> -2.00
        "high": "31000",
        "low": "29000.5",
        "baseVolume": "0.85",
        "quoteVolume": "25690.15",  # 15500 + 7250.125 + 2940.025
        "tradeCount": 3,
        "windowStart": "2001-01-01T00:00:00+00:00",
        "windowEnd": "2001-01-02T00:00:00+00:00",
    }
    assert one == {"data": {"ticker": btc}}
    eth = {
        "symbol": "ETH-USDT",
        "lastPrice": None,
        "openPrice": None,
        "change": None,
        "changePercent": None,
        "high": None,
        "low": None,
        "baseVolume": "0",
        "quoteVolume": "0",
        "tradeCount": 0,
        "windowStart": "2001-01-01T00:00:00+00:00",
        "windowEnd": "2001-01-02T00:00:00+00:00",
    }
    assert every == {"data": {"tickers": [btc, eth]}}


UNKNOWN_QUERIES = [
    '{ orderBook(symbol: "DOGE-USDT") { symbol } }',
    '{ trades(symbol: "DOGE-USDT") { edges { cursor } } }',
    '{ market(symbol: "DOGE-USDT") { symbol } }',
    '{ ticker(symbol: "DOGE-USDT") { symbol } }',
]


@pytest.mark.parametrize("query", UNKNOWN_QUERIES)
async def test_an_unknown_symbol_is_not_found_on_every_market_data_query(
    app: Starlette, query: str
) -> None:
    async with asgi_client(app) as client:
        body = await graphql(client, query)
    field = query.split("(")[0].strip("{ ")
    assert body["data"] in (None, {field: None}), body
    assert [(error["message"], error["path"], error["extensions"]) for error in body["errors"]] == [
        ("no market 'DOGE-USDT'", [field], {"code": "NOT_FOUND", "argument": "symbol"})
    ]


UNKNOWN_SUBSCRIPTIONS = [
    'subscription { orderBook(symbol: "DOGE-USDT") { sequence } }',
    'subscription { trades(symbol: "DOGE-USDT") { id } }',
    'subscription { ticker(symbol: "DOGE-USDT") { lastPrice } }',
]


def ws_url(platform: Platform) -> str:
    return platform.url.replace("http://", "ws://") + "/graphql"


async def _first_answer(platform: Platform, subprotocol: str, query: str) -> list[dict[str, Any]]:
    """The messages the server sends for ``query`` until it completes the operation."""
    legacy = subprotocol == "graphql-ws"
    async with connect(ws_url(platform), subprotocols=[subprotocol]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        start = "start" if legacy else "subscribe"
        await ws.send(json.dumps({"id": "1", "type": start, "payload": {"query": query}}))
        messages: list[dict[str, Any]] = []
        while not messages or messages[-1]["type"] not in ("complete", "error"):
            message = json.loads(await ws.recv())
            if message["type"] != "ka":
                messages.append(message)
        # The connection still serves other operations.
        await ws.send(
            json.dumps({"id": "2", "type": start, "payload": {"query": "{ markets { symbol } }"}})
        )
        while (answer := json.loads(await ws.recv()))["type"] not in ("next", "data"):
            pass
        assert answer["id"] == "2" and answer["payload"]["data"]["markets"]
    return messages


@pytest.mark.e2e
@pytest.mark.parametrize("subprotocol", ["graphql-transport-ws", "graphql-ws"])
@pytest.mark.parametrize("query", UNKNOWN_SUBSCRIPTIONS)
async def test_an_unknown_symbol_is_not_found_on_every_market_data_subscription(
    platform: Platform, subprotocol: str, query: str
) -> None:
    messages = await _first_answer(platform, subprotocol, query)
    # A first (and only) result holding the typed error, then the operation completes.
    result = "data" if subprotocol == "graphql-ws" else "next"
    assert messages == [
        {
            "id": "1",
            "type": result,
            "payload": {
                "data": None,
                "errors": [
                    {
                        "message": "no market 'DOGE-USDT'",
                        "extensions": {"code": "NOT_FOUND", "argument": "symbol"},
                    }
                ],
            },
        },
        {"id": "1", "type": "complete"},
    ]


@pytest.mark.e2e
async def test_the_ticker_subscription_follows_the_top_of_book_and_trades(
    platform: Platform, settings: Settings, services: Services, bus: CommandBus, db: Any
) -> None:
    buyer, seller = await create_user(db), await create_user(db)
    await deposit(bus, buyer, "USDT", "1000")
    await deposit(bus, seller, "BTC", "1")
    query = """subscription { ticker(symbol: "btc-usdt") { symbol lastPrice tradeCount
      bestBid bestBidQuantity bestAsk bestAskQuantity } }"""
    watch = Watch(platform, query, None, "graphql-transport-ws").start()
    try:
        first = (await watch.wait_for(1))[0]["ticker"]
        await subscribed(services.redis, services.keys.trades_channel("BTC-USDT"), watch)
        assert first["symbol"] == "BTC-USDT"
        assert (first["bestBid"], first["bestAsk"]) == (None, None)  # the tests' books are empty

        resting = await place(bus, buyer, "BTC-USDT", "BUY", "0.001", "12345.67")
        assert resting["ok"], resting
        items = await watch.wait_for(2)
        assert items[-1]["ticker"] == {
            **first,
            "bestBid": "12345.67",
            "bestBidQuantity": "0.001",
        }

        taken = await place(bus, seller, "BTC-USDT", "SELL", "0.001", "12345.67")
        assert taken["ok"], taken
        items = await watch.wait_for(3)
        # The trade and the emptied book arrive together or one after the other.
        while items[-1]["ticker"]["bestBid"] is not None or items[-1]["ticker"]["lastPrice"] != (
            "12345.67"
        ):
            items = await watch.wait_for(len(items) + 1)
        assert items[-1]["ticker"] == {
            **first,
            "lastPrice": "12345.67",
            "tradeCount": first["tradeCount"] + 1,
        }
    finally:
        await watch.stop_quietly()
        await clear_books(bus)
