"""WebSocket protection below the GraphQL layer (pure ASGI, so any ASGI server is covered).

:class:`WebSocketGuard` counts the open connections of each client IP and of the process;
past a cap it accepts the handshake only to close it at once with a code that says why
(:data:`CLOSE_TOO_MANY` for one client's cap, :data:`CLOSE_OVERLOADED` for the process's),
so nothing of the GraphQL machinery is built for it. It also refuses any message larger
than the HTTP body limit, closing with :data:`CLOSE_TOO_BIG` (the server's own ``ws_max_size``
should refuse it earlier, while it is still being read).

The caps are per process, on purpose: ``tradegraph api --workers N`` runs N processes on one
socket and each counts its own connections, so one client may hold up to N times a cap (as
across N replicas behind a proxy). Sharing the counts would cost a Redis round trip per
handshake and a leak on every crash; the caps are there to stop one client exhausting a
process, which per-process counting does.

Each admitted connection gets a :class:`Slot` in its scope (``scope[SLOT]``): the GraphQL
layer claims the logged-in user's place with it after ``connection_init`` and, when the
user is over their cap, asks for the close code the refusal must carry. The first close
sent wins; anything the application sends after it is dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.kit.metrics import WS_CONNECTIONS, WS_REFUSED

CLOSE_TOO_MANY = 4429
"""Too many connections from this client IP, or for this user."""
CLOSE_OVERLOADED = 1013
"""Try again later: this API process holds as many connections as it accepts."""
CLOSE_TOO_BIG = 1009
"""A message larger than the limit."""
CLOSE_TIMEOUT = 4408
"""No ``connection_init`` in time, or no running operation for too long."""
CLOSE_SLOW_CONSUMER = 4480
"""Slow consumer: a ``myOrders`` / ``myFills`` subscriber fell more than the subscription
queue behind. Everything queued before that was sent first, so the client has lost nothing
it received; it reconnects and reads the rest with the ``orders`` / ``fills`` queries."""

SLOT = "tradegraph.websocket_slot"


class Connections:
    """The process's open WebSocket connections, by client IP and by user."""

    def __init__(self, settings: Settings) -> None:
        self.per_ip_cap = settings.ws_max_connections_per_ip
        self.per_user_cap = settings.ws_max_connections_per_user
        self.total_cap = settings.ws_max_connections
        self.by_ip: Counter[str] = Counter()
        self.by_user: Counter[int] = Counter()
        self.total = 0

    def admit(self, ip: str) -> tuple[int, str, str] | None:
        """Take a place for ``ip``; or (close code, reason, metric label) if refused."""
        if self.total >= self.total_cap:
            return CLOSE_OVERLOADED, "server busy: too many connections; retry later", "total"
        if self.by_ip[ip] >= self.per_ip_cap:
            return CLOSE_TOO_MANY, "too many connections from your address", "ip"
        self.by_ip[ip] += 1
        self.total += 1
        WS_CONNECTIONS.inc()
        return None

    def leave(self, ip: str) -> None:
        self.by_ip[ip] -= 1
        if self.by_ip[ip] <= 0:
            del self.by_ip[ip]
        self.total -= 1
        WS_CONNECTIONS.dec()

    def claim_user(self, user_id: int) -> bool:
        if self.by_user[user_id] >= self.per_user_cap:
            WS_REFUSED.labels("user").inc()
            return False
        self.by_user[user_id] += 1
        return True

    def release_user(self, user_id: int) -> None:
        self.by_user[user_id] -= 1
        if self.by_user[user_id] <= 0:
            del self.by_user[user_id]


@dataclass(eq=False)
class Slot:
    """One admitted connection's place in :class:`Connections`."""

    connections: Connections
    ip: str
    user_id: int | None = None
    refusal: tuple[int, str] | None = None
    closed: bool = False
    close_code: int = field(default=1000)

    def claim_user(self, user_id: int) -> bool:
        """Count this connection against ``user_id``'s cap; ``False`` if they are at it."""
        if self.user_id == user_id:
            return True
        self.release_user()
        if not self.connections.claim_user(user_id):
            return False
        self.user_id = user_id
        return True

    def release_user(self) -> None:
        if self.user_id is not None:
            self.connections.release_user(self.user_id)
            self.user_id = None

    def refuse(self, code: int, reason: str) -> None:
        """The application's next close carries this code and reason instead of its own."""
        self.refusal = (code, reason)


def _size(message: Message) -> int:
    if (data := message.get("bytes")) is not None:
        return len(data)
    text: str = message.get("text") or ""
    return len(text.encode("utf-8", "surrogatepass"))


class WebSocketGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        connections: Connections,
        max_message_bytes: int,
        subprotocols: Sequence[str],
    ) -> None:
        self.app = app
        self.connections = connections
        self.max_message_bytes = max_message_bytes
        self.subprotocols = tuple(subprotocols)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        refused = self.connections.admit(ip)
        if refused is not None:
            code, reason, label = refused
            WS_REFUSED.labels(label).inc()
            await self._refuse(scope, receive, send, code, reason)
            return
        slot = Slot(self.connections, ip)
        scope[SLOT] = slot
        limit = self.max_message_bytes

        async def guarded_receive() -> Message:
            if slot.closed:
                return {"type": "websocket.disconnect", "code": slot.close_code}
            message = await receive()
            if message["type"] == "websocket.receive" and _size(message) > limit:
                WS_REFUSED.labels("size").inc()
                await guarded_send(
                    {
                        "type": "websocket.close",
                        "code": CLOSE_TOO_BIG,
                        "reason": f"message larger than {limit} bytes",
                    }
                )
                return {"type": "websocket.disconnect", "code": CLOSE_TOO_BIG}
            return message

        async def guarded_send(message: Message) -> None:
            if slot.closed:
                return  # the connection is closing: nothing more goes out
            if message["type"] == "websocket.close":
                if slot.refusal is not None:
                    code, reason = slot.refusal
                    message = {**message, "code": code, "reason": reason}
                slot.closed = True
                slot.close_code = int(message.get("code", 1000))
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        finally:
            slot.release_user()
            self.connections.leave(ip)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, code: int, reason: str
    ) -> None:
        """Complete the handshake only to close it: the client sees why, not a bare 403."""
        if (await receive())["type"] != "websocket.connect":
            return
        offered = scope.get("subprotocols") or ()
        chosen = next((p for p in offered if p in self.subprotocols), None)
        await send({"type": "websocket.accept", "subprotocol": chosen, "headers": []})
        await send({"type": "websocket.close", "code": code, "reason": reason})
