"""The WebSocket guard in-app (whatever the ASGI server): caps and the message size limit."""

from __future__ import annotations

from typing import Any

from starlette.types import Message, Receive, Scope, Send

from app.config import Settings
from app.kit.wsguard import (
    CLOSE_OVERLOADED,
    CLOSE_TOO_BIG,
    CLOSE_TOO_MANY,
    Connections,
    WebSocketGuard,
)


def _scope(ip: str) -> dict[str, Any]:
    return {"type": "websocket", "client": (ip, 1), "subprotocols": ["graphql-transport-ws"]}


async def _drive(
    guard: WebSocketGuard, ip: str, incoming: list[Message]
) -> tuple[list[Message], list[Message]]:
    """Run one connection; (what the app received, what went to the server)."""
    sent: list[Message] = []
    queue = list(incoming)

    async def receive() -> Message:
        return queue.pop(0) if queue else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: Message) -> None:
        sent.append(message)

    await guard(_scope(ip), receive, send)
    return guard.app.received, sent  # type: ignore[attr-defined]


class EchoApp:
    """Accepts, reads until disconnect, then tries to send once more."""

    def __init__(self) -> None:
        self.received: list[Message] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.received = []
        while (message := await receive())["type"] != "websocket.disconnect":
            self.received.append(message)
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
        self.received.append(message)
        await send({"type": "websocket.send", "text": "late"})


def _guard() -> WebSocketGuard:
    return WebSocketGuard(
        EchoApp(),
        connections=Connections(Settings()),
        max_message_bytes=1024,
        subprotocols=("graphql-transport-ws",),
    )


async def test_a_message_over_the_limit_closes_with_1009_and_never_reaches_the_app() -> None:
    guard = _guard()
    received, sent = await _drive(
        guard,
        "10.0.0.1",
        [
            {"type": "websocket.connect"},
            {"type": "websocket.receive", "text": "x" * 1024},
            {"type": "websocket.receive", "text": "é" * 513},  # 1,026 bytes
            {"type": "websocket.receive", "text": "never read"},
        ],
    )
    assert [m["type"] for m in received] == [
        "websocket.connect",
        "websocket.receive",
        "websocket.disconnect",
    ]
    assert received[-1]["code"] == CLOSE_TOO_BIG
    assert sent[-1]["type"] == "websocket.close" and sent[-1]["code"] == CLOSE_TOO_BIG
    assert guard.connections.total == 0  # the place is given back


async def test_caps_per_ip_and_in_total_close_with_their_codes() -> None:
    connections = Connections(Settings(ws_max_connections_per_ip=1, ws_max_connections=2))
    assert connections.admit("10.0.0.1") is None
    over = connections.admit("10.0.0.1")
    assert over is not None and over[0] == CLOSE_TOO_MANY
    assert connections.admit("10.0.0.2") is None
    refused = connections.admit("10.0.0.3")
    assert refused is not None and refused[0] == CLOSE_OVERLOADED
    connections.leave("10.0.0.1")
    assert connections.admit("10.0.0.3") is None
