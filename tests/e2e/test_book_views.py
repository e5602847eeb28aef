"""Depth-limited book subscriptions against the `orderBook` query, through the real API and
worker, after every kind of book change: levels taken, added inside and outside the view,
cancelled, amended, and a halt that cancels everything; and hundreds of WebSocket clients
on one book, each ending with the query's book."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets
from gql.transport.websockets import WebsocketsTransport

from app.kit.bus import CommandBus
from app.services import Services
from tests.support.books import BookCopy, book_checksum
from tests.support.exchange import clear_books, deposit, place
from tests.support.factories import create_user
from tests.support.live import Api, Watch
from tests.support.processes import Platform

pytestmark = pytest.mark.e2e

SYMBOL = "ETH-USDT"
BOOK = """query($s: String!, $d: Int!) { orderBook(symbol: $s, depth: $d) {
  sequence checksum bids { price quantity orders } asks { price quantity orders } } }"""
VIEW = """subscription { orderBook(symbol: "ETH-USDT", depth: 3) {
  type sequence prevSequence depth checksum
  bids { price quantity orders } asks { price quantity orders } } }"""
TOP = """subscription { bestBidAsk(symbol: "ETH-USDT") {
  sequence bid { price quantity } ask { price quantity } } }"""


@pytest.fixture
async def empty_book(bus: CommandBus) -> AsyncIterator[None]:
    await clear_books(bus, (SYMBOL,))
    yield
    await clear_books(bus, (SYMBOL,))


def replay(items: list[dict[str, Any]]) -> BookCopy:
    copy = BookCopy()
    for item in items:
        copy.apply(item["orderBook"])
    return copy


async def same_as_query(anonymous: Api, view: Watch, depth: int = 3) -> dict[str, Any]:
    """Wait until the view, replayed as a client does, equals ``orderBook(depth)``."""
    book: dict[str, Any] = (await anonymous(BOOK, s=SYMBOL, d=depth))["orderBook"]
    assert book_checksum(book["bids"], book["asks"]) == book["checksum"]
    await view.wait_until(lambda items: bool(items) and replay(items).equals(book), seconds=10)
    return book


def prices(book: dict[str, Any], side: str) -> list[str]:
    return [level["price"] for level in book[side]]


@pytest.mark.usefixtures("empty_book")
async def test_a_depth_view_equals_the_query_after_every_kind_of_change(
    platform: Platform, services: Services, bus: CommandBus
) -> None:
    maker = await create_user(services, kyc_status="approved")
    taker = await create_user(services, kyc_status="approved")
    await deposit(bus, maker.id, "ETH", "10")
    await deposit(bus, maker.id, "USDT", "10000")
    await deposit(bus, taker.id, "USDT", "10000")
    anonymous = Api(platform)
    asks = {}
    for i in range(6):
        reply = await place(bus, maker.id, SYMBOL, "SELL", "0.1", f"{3010 + i}")
        assert reply["ok"], reply
        asks[3010 + i] = reply["order_id"]
    for i in range(3):
        assert (await place(bus, maker.id, SYMBOL, "BUY", "0.1", f"{3000 - i}"))["ok"]

    view = Watch(platform, VIEW, None, WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL).start()
    top = Watch(platform, TOP, None, WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL).start()
    try:
        book = await same_as_query(anonymous, view)
        assert prices(book, "asks") == ["3010", "3011", "3012"]
        (first,) = await top.wait_for(1)
        assert first["bestBidAsk"]["ask"] == {"price": "3010", "quantity": "0.1"}
        assert first["bestBidAsk"]["bid"] == {"price": "3000", "quantity": "0.1"}

        # The defect: the two best levels taken whole; two levels enter the view.
        taken = await place(bus, taker.id, SYMBOL, "BUY", "0.2", "3011")
        assert [fill["price"] for fill in taken["fills"]] == ["3010", "3011"]
        book = await same_as_query(anonymous, view)
        assert prices(book, "asks") == ["3012", "3013", "3014"]
        last = view.items[-1]["orderBook"]
        assert last["type"] == "DELTA"
        assert {level["price"] for level in last["asks"]} == {"3010", "3011", "3013", "3014"}
        top_now = await top.wait_until(
            lambda items: (
                items[-1]["bestBidAsk"]["ask"] is not None
                and items[-1]["bestBidAsk"]["ask"]["price"] == "3012"
            )
        )
        assert [item["bestBidAsk"]["bid"]["price"] for item in top_now] == ["3000", "3000"]

        # A level added inside the view pushes the third out.
        inside = await place(bus, maker.id, SYMBOL, "SELL", "0.3", "3011.5")
        book = await same_as_query(anonymous, view)
        assert prices(book, "asks") == ["3011.5", "3012", "3013"]

        # A level added outside the view sends the view nothing.
        count = len(view.items)
        assert (await place(bus, maker.id, SYMBOL, "SELL", "0.1", "3020"))["ok"]
        await asyncio.sleep(0.5)
        assert len(view.items) == count
        await same_as_query(anonymous, view)

        # A cancel inside the view brings the next level back in.
        cancelled = await bus.submit("cancel", {"user_id": maker.id, "order_id": asks[3012]})
        assert cancelled["ok"], cancelled
        book = await same_as_query(anonymous, view)
        assert prices(book, "asks") == ["3011.5", "3013", "3014"]

        # An amend: a smaller quantity in place, and a price moved into the view.
        amended = await bus.submit(
            "amend", {"user_id": maker.id, "order_id": inside["order_id"], "quantity": "0.05"}
        )
        assert amended["ok"], amended
        book = await same_as_query(anonymous, view)
        assert book["asks"][0] == {"price": "3011.5", "quantity": "0.05", "orders": 1}
        moved = await bus.submit(
            "amend", {"user_id": maker.id, "order_id": asks[3015], "price": "3001"}
        )
        assert moved["ok"], moved
        book = await same_as_query(anonymous, view)
        assert prices(book, "asks") == ["3001", "3011.5", "3013"]

        # A halt that cancels every order empties the view; the top of book says so too.
        halted = await bus.submit(
            "halt", {"symbol": SYMBOL, "reason": "test", "cancel_orders": True}
        )
        assert halted["ok"], halted
        book = await same_as_query(anonymous, view)
        assert book["bids"] == book["asks"] == []
        await top.wait_until(
            lambda items: (
                items[-1]["bestBidAsk"]["bid"] is None and items[-1]["bestBidAsk"]["ask"] is None
            )
        )
        assert (await bus.submit("resume", {"symbol": SYMBOL}))["ok"]

        # Every update was checked on the way (prevSequence chain, checksum, depth).
        kinds = replay(view.items).kinds
        assert kinds[0] == "SNAPSHOT" and set(kinds[1:]) == {"DELTA"}
        tops = [(i["bestBidAsk"]["bid"], i["bestBidAsk"]["ask"]) for i in top.items]
        assert all(a != b for a, b in itertools.pairwise(tops))  # only changes
        await view.stop()
        await top.stop()
    finally:
        await view.stop_quietly()
        await top.stop_quietly()


async def _client(
    url: str,
    source: str,
    depth: int,
    updates: list[dict[str, Any]],
    ready: asyncio.Event,
    done: asyncio.Event,
) -> None:
    """A bare graphql-transport-ws client of the book, from loopback address ``source``
    (the API allows 50 connections an address)."""
    query = VIEW.replace("depth: 3", f"depth: {depth}")
    async with websockets.connect(
        url,
        subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
        local_addr=(source, 0),
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
        first = json.loads(await ws.recv())
        assert first["type"] == "next", first
        updates.append(first["payload"]["data"]["orderBook"])
        ready.set()
        while not done.is_set():
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), 0.2))
            except TimeoutError:
                continue
            assert message["type"] == "next", message
            updates.append(message["payload"]["data"]["orderBook"])


@pytest.mark.usefixtures("empty_book")
async def test_hundreds_of_websocket_clients_each_end_with_the_querys_book(
    platform: Platform, services: Services, bus: CommandBus
) -> None:
    maker = await create_user(services, kyc_status="approved")
    await deposit(bus, maker.id, "ETH", "100")
    await deposit(bus, maker.id, "USDT", "100000")
    url = platform.url.replace("http://", "ws://") + "/graphql"
    clients = 300
    depths = [1 + i % 10 for i in range(clients)]  # ten distinct views
    updates: list[list[dict[str, Any]]] = [[] for _ in range(clients)]
    ready = [asyncio.Event() for _ in range(clients)]
    done = asyncio.Event()
    tasks = [
        asyncio.create_task(
            _client(url, f"127.0.0.{2 + i // 40}", depths[i], updates[i], ready[i], done)
        )
        for i in range(clients)
    ]
    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(event.wait() for event in ready))
        placed = []
        for i in range(40):
            side, price = ("SELL", f"{3010 + i % 13}") if i % 2 else ("BUY", f"{2990 - i % 11}")
            reply = await place(bus, maker.id, SYMBOL, side, "0.1", price)
            assert reply["ok"], reply
            placed.append(reply["order_id"])
        for order_id in placed[::3]:
            assert (await bus.submit("cancel", {"user_id": maker.id, "order_id": order_id}))["ok"]
        anonymous = Api(platform)
        books = {d: (await anonymous(BOOK, s=SYMBOL, d=d))["orderBook"] for d in set(depths)}

        def caught_up() -> bool:
            for i in range(clients):
                copy = BookCopy()
                for update in updates[i]:
                    copy.apply(update)  # checks the chain and the checksum
                if not copy.equals(books[depths[i]]):
                    return False
            return True

        async with asyncio.timeout(30):
            while not caught_up():
                for task in tasks:
                    if task.done():
                        task.result()
                await asyncio.sleep(0.2)
        # Each view got its updates, not one message per level change.
        assert all(1 < len(u) <= 1 + 40 + 14 for u in updates)
    finally:
        done.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
