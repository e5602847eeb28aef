"""No client can exhaust the API: a real `tradegraph api` process with tightened WebSocket
caps, flooded and fed oversized messages, while a trader keeps trading over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator

import psutil
import pytest
from websockets.asyncio.client import ClientConnection

from app.kit.bus import CommandBus
from app.kit.wsguard import CLOSE_TIMEOUT, CLOSE_TOO_BIG, CLOSE_TOO_MANY
from app.services import Services
from tests.e2e.support_protection import (
    LEGACY_WS,
    TRANSPORT_WS,
    close_code,
    first_message_or_close,
    funded_trader,
    open_ws,
)
from tests.support.factories import create_user, login
from tests.support.processes import Platform

pytestmark = pytest.mark.e2e

PER_IP = 20
PER_USER = 2
FLOOD = 200


@pytest.fixture(scope="module")
def guarded(platform: Platform) -> Iterator[Platform]:
    """A second API process (same worker, database and Redis) with low WebSocket caps."""
    handle = Platform(
        settings=platform.settings,
        log_dir=platform.log_dir,
        env={
            "TRADEGRAPH_WS_MAX_CONNECTIONS_PER_IP": str(PER_IP),
            "TRADEGRAPH_WS_MAX_CONNECTIONS_PER_USER": str(PER_USER),
        },
    )
    try:
        handle.start_api_on("api-guarded", handle.port)
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def hasty(platform: Platform) -> Iterator[Platform]:
    """An API process with short init and idle timeouts."""
    handle = Platform(
        settings=platform.settings,
        log_dir=platform.log_dir,
        env={"TRADEGRAPH_WS_IDLE_TIMEOUT_SECONDS": "1", "TRADEGRAPH_WS_INIT_TIMEOUT_SECONDS": "1"},
    )
    try:
        handle.start_api_on("api-hasty", handle.port)
        yield handle
    finally:
        handle.stop()


async def _close_all(connections: list[ClientConnection]) -> None:
    for ws in connections:
        with contextlib.suppress(Exception):
            await ws.close()


async def test_a_connection_flood_is_refused_past_the_per_ip_cap_while_a_trader_trades(
    guarded: Platform, services: Services, bus: CommandBus
) -> None:
    trader = await funded_trader(services, bus)
    connections: list[ClientConnection] = []
    try:

        async def idle_client() -> object:
            ws = await open_ws(guarded.url, {})
            connections.append(ws)
            outcome: object = await first_message_or_close(ws)
            return outcome

        flood = asyncio.gather(*(idle_client() for _ in range(FLOOD)))
        placed = [await trader.place(guarded.url) for _ in range(5)]
        outcomes = await flood
        placed += [await trader.place(guarded.url) for _ in range(5)]
        # Past the cap the rest are closed at once, with 4429, while the first stay open.
        assert outcomes.count("connection_ack") == PER_IP
        assert outcomes.count(CLOSE_TOO_MANY) == FLOOD - PER_IP
        assert placed == ["PENDING"] * 10
        refused = [ws for ws in connections if ws.close_code is not None]
        assert {ws.close_reason for ws in refused} == {"too many connections from your address"}
    finally:
        await _close_all(connections)
        await trader.cancel_all(guarded.url)
    # Their places are given back when they close: a new client gets in.
    await asyncio.sleep(0.3)
    ws = await open_ws(guarded.url, {})
    assert await first_message_or_close(ws) == "connection_ack"
    await ws.close()


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_user_past_their_connection_cap_is_refused_with_4429(
    guarded: Platform, services: Services, protocol: str
) -> None:
    token = await login(services, await create_user(services))
    held = [await open_ws(guarded.url, {"token": token}, protocol) for _ in range(PER_USER)]
    try:
        assert [await first_message_or_close(ws) for ws in held] == ["connection_ack"] * PER_USER
        extra = await open_ws(guarded.url, {"token": token}, protocol)
        if protocol == LEGACY_WS:
            message = json.loads(await extra.recv())
            assert message["type"] == "connection_error"
            assert message["payload"]["extensions"] == {"code": "RATE_LIMITED"}
        assert await close_code(extra) == CLOSE_TOO_MANY
        # Anonymous connections from the same address are not the user's.
        anonymous = await open_ws(guarded.url, {}, protocol)
        assert await first_message_or_close(anonymous) == "connection_ack"
        await anonymous.close()
    finally:
        await _close_all(held)


async def test_oversized_websocket_messages_are_refused_and_not_held(
    guarded: Platform, services: Services, bus: CommandBus
) -> None:
    trader = await funded_trader(services, bus)
    api = psutil.Process(guarded.procs["api-guarded"].pid)
    before = api.memory_info().rss
    huge = json.dumps({"type": "subscribe", "id": "1", "payload": {"query": "x" * 4_000_000}})
    try:
        for _ in range(10):
            ws = await open_ws(guarded.url, {}, max_size=None)
            assert await first_message_or_close(ws) == "connection_ack"
            with contextlib.suppress(Exception):
                await ws.send(huge)
            assert await close_code(ws) == CLOSE_TOO_BIG
            assert await trader.place(guarded.url) == "PENDING"
        # The server stopped reading at the limit (256 KiB): 40 MB sent, nothing kept.
        assert api.memory_info().rss - before < 30 * 1024 * 1024
    finally:
        await trader.cancel_all(guarded.url)


async def test_a_connection_that_never_subscribes_is_closed_when_idle(hasty: Platform) -> None:
    idle = await open_ws(hasty.url, {})
    assert await first_message_or_close(idle) == "connection_ack"
    started = asyncio.get_running_loop().time()
    assert await close_code(idle, seconds=5) == CLOSE_TIMEOUT
    assert 0.9 <= asyncio.get_running_loop().time() - started < 4


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_connection_that_never_initialises_is_closed(
    hasty: Platform, protocol: str
) -> None:
    silent = await open_ws(hasty.url, None, protocol)
    assert await close_code(silent, seconds=5) == CLOSE_TIMEOUT


async def test_a_quiet_subscription_is_not_idle(hasty: Platform) -> None:
    ws = await open_ws(hasty.url, {})
    try:
        assert await first_message_or_close(ws) == "connection_ack"
        # Nobody trades ETH here: the subscription sends nothing, and must stay open.
        query = 'subscription { trades(symbol: "ETH-USDT") { id } }'
        await ws.send(json.dumps({"type": "subscribe", "id": "t", "payload": {"query": query}}))
        await asyncio.sleep(2.5)
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "pong"
        # Once it completes, the idle clock runs again.
        await ws.send(json.dumps({"type": "complete", "id": "t"}))
        assert await close_code(ws, seconds=5) == CLOSE_TIMEOUT
    finally:
        await ws.close()
