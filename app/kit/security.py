"""HTTP hardening that sits in front of every route, as pure ASGI middleware."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _BodyTooLarge(Exception):
    pass


def error_body(message: str, code: str) -> bytes:
    """A GraphQL-shaped error document, for refusals made before GraphQL runs."""
    return json.dumps({"errors": [{"message": message, "extensions": {"code": code}}]}).encode()


class BodySizeLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413 and a JSON error.

    A declared ``Content-Length`` over the limit is refused before the body is read; a body
    streamed without one is counted as it arrives and refused as soon as it passes the
    limit, so no more than ``max_bytes`` is ever buffered. WebSockets pass straight through
    (the server's ``ws_max_size`` bounds their messages).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if started:
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = error_body(
            f"request body too large: the limit is {self.max_bytes} bytes", "PAYLOAD_TOO_LARGE"
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
