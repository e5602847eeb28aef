"""Shared pieces of the protection tests: a funded trader who keeps trading over HTTP, and
raw WebSocket clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.kit.bus import CommandBus
from app.services import Services
from tests.support.exchange import deposit
from tests.support.factories import create_user, login

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"

PLACE = """mutation($input: PlaceOrderInput!) { placeOrder(input: $input) {
  order { id status } errors { code message } } }"""


@dataclass
class Trader:
    """A KYC-approved trader with USDT, resting small bids far below the market."""

    user_id: int
    token: str

    async def place(self, base_url: str, client: httpx.AsyncClient | None = None) -> str:
        """Place one resting bid over HTTP; return its status (raises unless it worked)."""
        body = {
            "query": PLACE,
            "variables": {
                "input": {
                    "symbol": "BTC-USDT",
                    "side": "BUY",
                    "type": "LIMIT",
                    "quantity": "0.001",
                    "price": "10000",
                }
            },
        }
        headers = {"Authorization": f"Bearer {self.token}"}
        if client is None:
            async with httpx.AsyncClient(timeout=10) as own:
                response = await own.post(f"{base_url}/graphql", json=body, headers=headers)
        else:
            response = await client.post(f"{base_url}/graphql", json=body, headers=headers)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        assert "errors" not in result, result
        payload = result["data"]["placeOrder"]
        assert payload["errors"] == [], payload
        status: str = payload["order"]["status"]
        return status

    async def cancel_all(self, base_url: str) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            await client.post(
                f"{base_url}/graphql",
                json={"query": "mutation { cancelAllOrders { cancelledCount } }"},
                headers={"Authorization": f"Bearer {self.token}"},
            )


async def funded_trader(services: Services, bus: CommandBus) -> Trader:
    user = await create_user(services, kyc_status="approved")
    await deposit(bus, user.id, "USDT", "100000")
    return Trader(user.id, await login(services, user))


def ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://") + "/graphql"


async def open_ws(
    base_url: str,
    payload: dict[str, Any] | None = None,
    protocol: str = TRANSPORT_WS,
    **kwargs: Any,
) -> ClientConnection:
    """A connection that has sent ``connection_init`` (``payload=None``: sent nothing)."""
    ws = await connect(ws_url(base_url), subprotocols=[protocol], open_timeout=10, **kwargs)  # type: ignore[list-item]
    if payload is not None:
        with contextlib.suppress(ConnectionClosed):  # refused already: the close says why
            await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
    return ws


async def first_message_or_close(ws: ClientConnection, seconds: float = 10.0) -> Any:
    """The first message's type, or the close code if the server closed instead."""
    try:
        async with asyncio.timeout(seconds):
            return json.loads(await ws.recv())["type"]
    except ConnectionClosed as closed:
        assert closed.rcvd is not None
        return closed.rcvd.code


async def close_code(ws: ClientConnection, seconds: float = 10.0) -> int:
    """Read until the server closes; its close code."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                await ws.recv()
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "closed without a close frame"
        return closed.rcvd.code
