"""The ASGI application: Strawberry at /graphql, health, readiness and metrics.

This is the one module of ``app`` allowed to import ``graph`` (an import-linter contract
says so): it mounts the schema.

Request bodies over ``max_body_bytes`` are refused with 413 before they are read. Refusals
Strawberry makes before GraphQL runs (bad JSON, a mutation over GET...) are JSON errors with
``extensions.code``. WebSockets authenticate in ``connection_init`` (see ``on_ws_connect``).

Protection (see the README's "Limits and protection"): X-Forwarded-For is believed only
from ``trusted_proxies`` (uvicorn's ProxyHeadersMiddleware, run in the app so any server is
covered); WebSocket connections are capped per client IP, per user and per process and
their messages at the body limit (:mod:`app.kit.wsguard`); a connection that does not
initialise in time, or has no running operation for ``ws_idle_timeout_seconds``, is closed
(:class:`_Watchdog`); ``/metrics`` in production answers loopback callers and holders of the
metrics token only.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import ipaddress
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, cast

import orjson
from cross_web import HTTPException
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.schema import BaseSchema
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionErrorMessage,
    ConnectionInitMessage,
)
from strawberry.types.unset import UNSET, UnsetType
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.config import Settings, get_settings
from app.kit.metrics import (
    API_PROCESS_GRAPHQL_REQUESTS,
    HTTP_LATENCY,
    HTTP_REQUESTS,
    WS_REFUSED,
    metrics_endpoint,
    process_exiting,
)
from app.kit.security import BodySizeLimitMiddleware, error_body
from app.kit.wsguard import CLOSE_TIMEOUT, CLOSE_TOO_MANY, SLOT, Connections, Slot, WebSocketGuard
from app.services import Services
from graph.context import Context
from graph.schema import schema
from graph.shared import encoded

log = logging.getLogger(__name__)

READINESS_TIMEOUT = 2.0
KNOWN_PATHS = frozenset({"/graphql", "/healthz", "/readyz", "/metrics"})
HTTP_ERROR_CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


class _AnyOperation:
    """The schema as the legacy handler sees it: its ``subscribe`` runs any operation.

    Strawberry's legacy ``graphql-ws`` handler sends everything through ``subscribe``, which
    refuses queries and mutations; Apollo's subscriptions-transport-ws (and the clients
    built for it, gql's included) send those over the socket too.
    """

    def __init__(self, schema: BaseSchema) -> None:
        self._schema = schema

    def __getattr__(self, name: str) -> Any:
        return getattr(self._schema, name)

    async def subscribe(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> Any:
        return await self._schema.stream(
            query,
            variable_values=variable_values,
            context_value=context_value,
            root_value=root_value,
            operation_name=operation_name,
            operation_extensions=operation_extensions,
        )


class _Watchdog:
    """Closes (4408) a connection that has had no running operation for the idle timeout,
    or (legacy protocol, which has no timer of its own) that has not sent
    ``connection_init`` within the init timeout. A connection with a subscription running,
    however quiet its market, is never idle."""

    context: Context
    websocket: Any

    def _busy(self) -> bool:
        raise NotImplementedError

    def _initialised(self) -> bool:
        return True

    async def _watch(self) -> None:
        settings = self.context.services.settings
        idle_timeout = settings.ws_idle_timeout_seconds
        init_timeout = settings.ws_init_timeout_seconds
        loop = asyncio.get_running_loop()
        started = idle_since = loop.time()
        tick = min(1.0, idle_timeout / 4, init_timeout / 4)
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            if self._busy():
                idle_since = now
            elif not self._initialised() and now - started >= init_timeout:
                await self._close("init", "Connection initialisation timeout")
                return
            elif now - idle_since >= idle_timeout:
                await self._close("idle", f"idle: no operation for {idle_timeout:g} s")
                return

    async def _close(self, label: str, reason: str) -> None:
        WS_REFUSED.labels(label).inc()
        with contextlib.suppress(Exception):  # the connection may be closing already
            await self.websocket.close(code=CLOSE_TIMEOUT, reason=reason)

    async def _watched(self, handle: Callable[[], Any]) -> None:
        watchdog = asyncio.create_task(self._watch(), name="websocket-watchdog")
        try:
            await handle()
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog


class TransportWSHandler(_Watchdog, BaseGraphQLTransportWSHandler[Context, None]):
    """``graphql-transport-ws`` with the idle watchdog (its init timeout is Strawberry's)."""

    def _busy(self) -> bool:
        return bool(self.operations)

    async def handle(self) -> None:
        await self._watched(super().handle)


class LegacyWSHandler(_Watchdog, BaseGraphQLWSHandler[Context, None]):
    """Legacy ``graphql-ws``: queries and mutations run too (see :class:`_AnyOperation`),
    and a refused ``connection_init`` closes with 4403 as on ``graphql-transport-ws``
    (Strawberry's own handler would close with 1011)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.schema = cast(BaseSchema, _AnyOperation(self.schema))
        self._init_received = False

    def _busy(self) -> bool:
        return bool(self.tasks)

    def _initialised(self) -> bool:
        return self._init_received

    async def handle(self) -> None:
        await self._watched(super().handle)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        self._init_received = True
        payload = message.get("payload")
        if payload is None or isinstance(payload, dict):
            self.context.connection_params = payload
            try:
                await self.view.on_ws_connect(self.context)
            except ConnectionRejectionError as rejection:
                await self.send_message(
                    ConnectionErrorMessage(type="connection_error", payload=rejection.payload)
                )
                await self.websocket.close(code=4403, reason="Forbidden")
                return
        await super().handle_connection_init(message)


# 19 digits or more, not inside a string or not: a number orjson may read as a float.
_LONG_NUMBER = re.compile(r"\d{19}")
_LONG_NUMBER_BYTES = re.compile(rb"\d{19}")


def encode_body(data: object) -> bytes:
    """A response body, by orjson; by the standard library for what orjson refuses (a lone
    surrogate, which an error message may quote from the input)."""
    try:
        return orjson.dumps(data)
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(data, separators=(",", ":")).encode()


class GraphQLApp(GraphQL[Context, None]):
    graphql_ws_handler_class = LegacyWSHandler
    graphql_transport_ws_handler_class = TransportWSHandler

    def __init__(self, services_of: Callable[[HTTPConnection], Services], **kwargs: Any) -> None:
        super().__init__(schema, graphql_ide="graphiql", **kwargs)
        self._services_of = services_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        try:
            response = await self.run(Request(scope=scope, receive=receive))
        except HTTPException as exc:
            # Strawberry answers malformed requests in plain text; clients get JSON errors.
            response = Response(
                error_body(exc.reason, HTTP_ERROR_CODES.get(exc.status_code, "BAD_REQUEST")),
                status_code=exc.status_code,
                media_type="application/json",
            )
        await response(scope, receive, send)

    def encode_json(self, data: object) -> str:
        """WebSocket messages. A ``next`` (or legacy ``data``) message of only data: its
        payload is written once for every subscriber of the same shared event."""
        if isinstance(data, dict) and data.get("type") in ("next", "data"):
            payload = data.get("payload")
            if isinstance(payload, dict) and payload.keys() == {"data"}:
                return (
                    f'{{"id":{json.dumps(data.get("id"))},"type":"{data["type"]}",'
                    f'"payload":{{"data":{encoded(payload["data"])}}}}}'
                )
        return json.dumps(data, separators=(",", ":"))

    def decode_json(self, data: str | bytes) -> object:
        """Bodies, ``variables`` and WebSocket messages that are not UTF-8 or are nested too
        deep are malformed JSON (HTTP 400 ``BAD_REQUEST``, WebSocket close 4400).

        orjson reads them, except what it reads differently from the standard library, which
        then does: a number of 19 digits or more (orjson makes a float of an integer past 64
        bits), and what orjson refuses (a lone surrogate escape such as ``"\\ud800"``, which
        the input guard refuses with a typed error; ``NaN``; a malformed body, for the
        standard library's error)."""
        long_number = _LONG_NUMBER_BYTES if isinstance(data, bytes) else _LONG_NUMBER
        if not long_number.search(data):  # type: ignore[arg-type]
            try:
                return orjson.loads(data)
            except orjson.JSONDecodeError:
                pass
        try:
            return json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
        except (UnicodeDecodeError, RecursionError) as exc:
            reason = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else "nested too deep"
            raise json.JSONDecodeError(f"malformed JSON ({reason})", "", 0) from None

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        """Strawberry's empty sub-response without its cost: ``Response()`` renders headers
        for an empty body and then deletes ``content-length`` again (~4 % of a mutation's
        CPU). Resolvers set headers, cookies and the status on it as before."""
        sub_response = Response.__new__(Response)
        sub_response.status_code = None  # type: ignore[assignment]  # as Strawberry's
        sub_response.media_type = None
        sub_response.body = b""
        sub_response.background = None
        sub_response.raw_headers = []
        return sub_response

    def create_response(
        self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse], sub_response: Response
    ) -> Response:
        """Strawberry's, with the body written by orjson (WebSocket messages keep
        :meth:`encode_json`: they must be text frames, and orjson writes bytes)."""
        response = Response(
            encode_body(response_data), status_code=200, media_type="application/json"
        )
        response.headers.raw.extend(sub_response.headers.raw)
        if sub_response.background:
            response.background = sub_response.background
        if sub_response.status_code:
            response.status_code = sub_response.status_code
        return response

    def parse_json(self, data: str | bytes) -> Any:
        """An HTTP body (or a GET's ``variables``) must be a JSON object."""
        parsed = super().parse_json(data)
        if not isinstance(parsed, dict):
            raise HTTPException(400, "the request must be a JSON object")
        return parsed

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        return Context(
            request=request,
            response=response if isinstance(response, Response) else None,
            services=self._services_of(request),
        )

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Authenticate from the ``connection_init`` payload; a bad token closes with 4403.

        No credentials at all is an anonymous connection (public subscriptions only). A user
        already holding ``ws_max_connections_per_user`` connections is refused with 4429.
        """
        authentication = await context.authenticate()
        slot = context.request.scope.get(SLOT)
        viewer = authentication.viewer
        if viewer is not None and isinstance(slot, Slot) and not slot.claim_user(viewer.user_id):
            slot.refuse(CLOSE_TOO_MANY, "too many connections for this account")
            raise ConnectionRejectionError(
                {
                    "message": "too many open connections for this account",
                    "extensions": {"code": "RATE_LIMITED"},
                }
            )
        if authentication.error is not None:
            log.error("could not check a websocket session", exc_info=authentication.error)
            reason = "could not check the session; try again"
        elif authentication.refusal is not None:
            reason = authentication.refusal
        else:
            return cast(UnsetType, UNSET)
        raise ConnectionRejectionError(
            {"message": reason, "extensions": {"code": "UNAUTHENTICATED"}}
        )

    async def render_graphql_ide(self, request: Request) -> Response:
        """GraphiQL: everyone outside production; in production only an admin's request."""
        services = self._services_of(request)
        if services.settings.is_production:
            viewer = await Context(request=request, response=None, services=services).viewer()
            if viewer is None or not viewer.is_admin:
                raise HTTPException(404, "Not Found")
        return await super().render_graphql_ide(request)


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
            if path == "/graphql":
                API_PROCESS_GRAPHQL_REQUESTS.inc()


def _may_read_metrics(request: Request, settings: Settings) -> bool:
    """Outside production, anyone; in production, loopback callers and the token's holders."""
    if not settings.is_production:
        return True
    if settings.metrics_token:
        presented = request.headers.get("authorization", "")
        expected = f"Bearer {settings.metrics_token}"
        if hmac.compare_digest(presented.encode(), expected.encode()):
            return True
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def metrics(request: Request) -> Response:
    services: Services = request.app.state.services
    if not _may_read_metrics(request, services.settings):
        return Response(
            error_body("Not Found", "NOT_FOUND"), status_code=404, media_type="application/json"
        )
    return await metrics_endpoint(request)


class WorkerDown(RuntimeError):
    """The matching worker's heartbeat is missing."""


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

    async def check_worker() -> None:
        # The matching worker's matcher loop refreshes this key while it makes progress
        # (every 0.5 s, TTL 3 s): a wedged worker lets it lapse.
        if not await services.redis.exists(services.keys.worker_heartbeat()):
            raise WorkerDown("no heartbeat from the matching worker")

    probes = (("postgres", check_postgres), ("redis", check_redis), ("worker", check_worker))
    for name, probe in probes:
        try:
            await asyncio.wait_for(probe(), READINESS_TIMEOUT)
            checks[name] = "ok"
        except Exception as exc:
            log.warning("readiness check %s failed: %s", name, exc)
            checks[name] = f"down: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


def create_app(settings: Settings | None = None) -> Starlette:
    """The API. Middleware, outermost first: proxy headers (the real client, from trusted
    proxies only), metrics, the body limit, the WebSocket guard, then the routes."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.services = Services.create(settings)
        await app.state.services.start()
        # Modules, the schema and the pools live as long as the process: keep them out of
        # every collection, and collect the young generation less often (a request
        # allocates thousands of short-lived objects, nearly all freed by reference
        # counting), so a full collection does not stall a request now and then.
        gc.freeze()
        gc.set_threshold(20_000, 20, 50)
        try:
            yield
        finally:
            await app.state.services.close()
            process_exiting()

    protocols = (GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL)
    graphql = GraphQLApp(
        services_of=lambda request: request.app.state.services,
        subscription_protocols=protocols,
        connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout_seconds),
    )
    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
        ],
        lifespan=lifespan,
    )
    # The last added runs first: metrics see everything, including 413s.
    app.add_middleware(
        WebSocketGuard,
        connections=Connections(settings),
        max_message_bytes=settings.max_body_bytes,
        subprotocols=protocols,
    )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxy_list)
    return app
