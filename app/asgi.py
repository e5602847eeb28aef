"""The ASGI application: Strawberry at /graphql, health, readiness and metrics.

This is the one module of ``app`` allowed to import ``graph`` (an import-linter contract
says so): it mounts the schema.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

from app.config import Settings, get_settings
from app.kit.metrics import HTTP_LATENCY, HTTP_REQUESTS, metrics_endpoint
from app.services import Services
from graph.context import Context
from graph.schema import schema

log = logging.getLogger(__name__)

READINESS_TIMEOUT = 2.0
KNOWN_PATHS = frozenset({"/graphql", "/healthz", "/readyz", "/metrics"})


class GraphQLApp(GraphQL[Context, None]):
    def __init__(self, services_of: Any, **kwargs: Any) -> None:
        super().__init__(schema, **kwargs)
        self._services_of = services_of

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        return Context(
            request=request,
            response=response if isinstance(response, Response) else None,
            services=self._services_of(request),
        )


class MetricsMiddleware:
    """Counts and times HTTP requests (pure ASGI, so WebSockets pass straight through)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in KNOWN_PATHS else "other"
        status = 500
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            HTTP_LATENCY.labels(path).observe(time.perf_counter() - started)
            HTTP_REQUESTS.labels(scope["method"], path, str(status)).inc()


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    services: Services = request.app.state.services
    checks: dict[str, str] = {}

    async def check_postgres() -> None:
        async with services.db.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def check_redis() -> None:
        await services.redis.ping()

    for name, probe in (("postgres", check_postgres), ("redis", check_redis)):
        try:
            await asyncio.wait_for(probe(), READINESS_TIMEOUT)
            checks[name] = "ok"
        except Exception as exc:
            log.warning("readiness check %s failed: %s", name, exc)
            checks[name] = f"down: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.services = Services.create(settings)
        try:
            yield
        finally:
            await app.state.services.close()

    graphql = GraphQLApp(
        services_of=lambda request: request.app.state.services,
        graphql_ide=None if settings.is_production else "graphiql",
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
    )
    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(MetricsMiddleware)
    return app
