"""A subscriber to ``myFills`` that stops reading loses nothing: a real `tradegraph api`
process with a small subscription queue sends it everything queued and then closes its
WebSocket with 4480 (slow consumer); what it received is the start of its fills, in order,
with no gap, as the ``fills`` query lists them."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.config import Settings
from app.kit.bus import CommandBus
from app.kit.redis import Keys
from app.kit.wsguard import CLOSE_SLOW_CONSUMER
from app.services import Services
from tests.e2e.support_protection import TRANSPORT_WS, ws_url
from tests.support.exchange import deposit, place
from tests.support.factories import create_user, login
from tests.support.live import listening
from tests.support.processes import Platform

pytestmark = pytest.mark.e2e

QUEUE = 10  # the smallest TRADEGRAPH_SUBSCRIPTION_QUEUE_SIZE allowed
MAKERS_PER_ROUND = 50
# The same subscription many times on one connection: each fill is sent that many times,
# so the kernel's socket buffers (megabytes on loopback) fill in a few rounds.
SUBSCRIPTIONS = 40
MY_FILLS = "subscription { myFills { id orderId side price quantity liquidity } }"
FILLS = """query($after: String) { fills(first: 100, after: $after) {
  edges { node { id } } pageInfo { hasNextPage endCursor } } }"""
OVERFLOWS = re.compile(r'^tradegraph_subscription_overflows_total\{outcome="close"\} (\S+)$', re.M)


@pytest.fixture(scope="module")
def impatient(platform: Platform) -> Iterator[Platform]:
    """A second API process (same worker, database and Redis) with a small subscription
    queue."""
    handle = Platform(
        settings=platform.settings,
        log_dir=platform.log_dir,
        env={"TRADEGRAPH_SUBSCRIPTION_QUEUE_SIZE": str(QUEUE)},
    )
    try:
        handle.start_api_on("api-impatient", handle.port)
        yield handle
    finally:
        handle.stop()


async def _overflows(base_url: str) -> float:
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{base_url}/metrics")).text
    found = OVERFLOWS.search(text)
    return float(found.group(1)) if found else 0.0


async def _subscribe_without_reading(base_url: str, token: str) -> ClientConnection:
    """A client that reads as little as it can (a small receive buffer, a one-message
    queue: the library stops reading the socket while it is full), subscribed to its fills
    ``SUBSCRIPTIONS`` times, ids "1", "2"..."""
    port = int(base_url.rsplit(":", 1)[1])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    ws = await connect(
        ws_url(base_url),
        sock=sock,
        subprotocols=[TRANSPORT_WS],  # type: ignore[list-item]
        max_queue=1,
        open_timeout=10,
    )
    await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    for n in range(1, SUBSCRIPTIONS + 1):
        subscribe = {"id": str(n), "type": "subscribe", "payload": {"query": MY_FILLS}}
        await ws.send(json.dumps(subscribe))
    return ws


async def _all_fill_ids(base_url: str, token: str) -> list[str]:
    """Every fill of the caller, oldest first (the query lists newest first)."""
    ids: list[str] = []
    after: str | None = None
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            response = await client.post(
                f"{base_url}/graphql",
                json={"query": FILLS, "variables": {"after": after}},
                headers={"Authorization": f"Bearer {token}"},
            )
            page = response.json()["data"]["fills"]
            ids += [edge["node"]["id"] for edge in page["edges"]]
            if not page["pageInfo"]["hasNextPage"]:
                return ids[::-1]
            after = page["pageInfo"]["endCursor"]


async def _fill_round(bus: CommandBus, maker: int, taker: int) -> None:
    """The maker rests ``MAKERS_PER_ROUND`` small asks; one taker buy fills them all."""
    asks = await asyncio.gather(
        *(place(bus, maker, "BTC-USDT", "SELL", "0.001", "30000") for _ in range(MAKERS_PER_ROUND))
    )
    assert all(ask["ok"] for ask in asks), asks
    reply = await place(bus, taker, "BTC-USDT", "BUY", f"{0.001 * MAKERS_PER_ROUND:.3f}", "30000")
    assert reply["ok"], reply


@pytest.mark.usefixtures("empty_books_after")
async def test_a_my_fills_subscriber_that_stops_reading_is_closed_4480_having_lost_nothing(
    impatient: Platform, services: Services, bus: CommandBus, settings: Settings
) -> None:
    maker_user = await create_user(services, kyc_status="approved")
    taker_user = await create_user(services, kyc_status="approved")
    await deposit(bus, maker_user.id, "BTC", "100")
    await deposit(bus, taker_user.id, "USDT", "10000000")
    token = await login(services, maker_user)
    overflows_before = await _overflows(impatient.url)

    ws = await _subscribe_without_reading(impatient.url, token)
    assert settings.redis_url
    redis = Redis.from_url(settings.redis_url)
    try:
        await listening(redis, Keys(settings.redis_prefix).user_channel(maker_user.id))
        # Fills happen while the client reads nothing, until the API gives up on it.
        for _ in range(200):
            await _fill_round(bus, maker_user.id, taker_user.id)
            if await _overflows(impatient.url) > overflows_before:
                break
        else:
            pytest.fail("the API never found the subscriber too slow")
        await _fill_round(bus, maker_user.id, taker_user.id)  # more it must not be sent

        # Now it reads: what was queued, then the close.
        received: dict[str, list[str]] = {str(n): [] for n in range(1, SUBSCRIPTIONS + 1)}
        sides: set[tuple[str, str]] = set()
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(60):
                while True:
                    message = json.loads(await ws.recv())
                    assert message["type"] == "next", message
                    fill: dict[str, Any] = message["payload"]["data"]["myFills"]
                    received[message["id"]].append(fill["id"])
                    sides.add((fill["side"], fill["liquidity"]))
    finally:
        await redis.aclose()
        await ws.close()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CLOSE_SLOW_CONSUMER
    assert closed.value.rcvd.reason.startswith("slow consumer")

    everything = await _all_fill_ids(impatient.url, token)
    # Each subscription got its fills in order with no gap (a run of what the query lists:
    # from the first fill, or from the fill after it became live), and not the tail the
    # client re-reads with the query.
    for ids in received.values():
        assert ids, received
        first = everything.index(ids[0])
        assert ids == everything[first : first + len(ids)]
        assert first + len(ids) < len(everything)
    assert any(ids[0] == everything[0] for ids in received.values())
    # The one that overflowed first was sent everything it had queued.
    assert max(len(ids) for ids in received.values()) >= MAKERS_PER_ROUND
    assert sides == {("SELL", "MAKER")}
