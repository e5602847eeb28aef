"""What every resolver sees: the request, the services, who is calling, the loaders.

Over HTTP a context lives for one request (one operation). Over a WebSocket one context
serves every operation of the connection, so :meth:`Context.begin_operation` (called by
the ``RequestGuard`` extension) gives each operation fresh loaders, a fresh look at the
session (a logout ends access for the next operation at once) and its own request id.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from app.accounts.sessions import Viewer
from app.kit.auth import InvalidToken, bearer_token
from app.kit.metrics import WS_REFUSED
from app.kit.pubsub import when_redis_answers
from app.kit.ratelimit import Caller
from app.kit.wsguard import CLOSE_SLOW_CONSUMER
from app.services import Services
from graph.errors import slow_consumer
from graph.loaders import Loaders

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def new_request_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Authentication:
    """The outcome of checking the caller's credentials.

    ``viewer`` is set for a live session. ``refusal`` says why credentials that *were*
    presented are refused (a forged, expired or logged-out token); no credentials at all is
    an anonymous caller, not a refusal. ``error`` is an infrastructure failure (Redis down):
    the caller is then neither let in nor refused, and the operation fails.
    """

    viewer: Viewer | None = None
    refusal: str | None = None
    error: Exception | None = None


@dataclass(eq=False)
class Context:
    request: Request | WebSocket
    response: Response | None
    services: Services
    connection_params: dict[str, object] | None = None
    request_id: str = field(default_factory=new_request_id)
    _loaders: Loaders | None = field(default=None, init=False, repr=False)
    _authentication: Authentication | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        incoming = self.request.headers.get("x-request-id")
        if incoming is not None and _REQUEST_ID.fullmatch(incoming):
            self.request_id = incoming

    @property
    def loaders(self) -> Loaders:
        """This operation's DataLoaders, made when a resolver first asks (most never do)."""
        if self._loaders is None:
            self._loaders = Loaders(self.services)
        return self._loaders

    @property
    def is_websocket(self) -> bool:
        return isinstance(self.request, WebSocket)

    @property
    def client_ip(self) -> str:
        client = self.request.client
        return client.host if client else "unknown"

    def begin_operation(self) -> None:
        self._loaders = None
        self._authentication = None
        if self.is_websocket:
            self.request_id = new_request_id()

    def credentials(self) -> str | None:
        """The access token the caller presents; :class:`InvalidToken` if malformed.

        HTTP: ``Authorization: Bearer <token>``. WebSocket: the ``connection_init`` payload's
        ``Authorization`` (``Bearer <token>``) or ``token``, else the handshake's header.
        """
        params = self.connection_params or {}
        for name in ("Authorization", "authorization"):
            if name in params:
                value = params[name]
                if not isinstance(value, str):
                    raise InvalidToken("the Authorization parameter must be 'Bearer <token>'")
                return bearer_token(value)
        if "token" in params:
            token = params["token"]
            if not isinstance(token, str) or not token:
                raise InvalidToken("the token parameter must be a non-empty string")
            return token
        return bearer_token(self.request.headers.get("authorization"))

    async def authenticate(self) -> Authentication:
        if self._authentication is None:
            self._authentication = await self._check_credentials()
        return self._authentication

    async def _check_credentials(self, *, fresh: bool = False) -> Authentication:
        try:
            token = self.credentials()
            if token is None:
                return Authentication()
            viewer = await self.services.accounts.authenticate(token, fresh=fresh)
            return Authentication(viewer=viewer)
        except InvalidToken as refusal:
            return Authentication(refusal=str(refusal))
        except Exception as exc:
            return Authentication(error=exc)

    def signed_in(self, viewer: Viewer) -> None:
        """The caller just logged in: the rest of this operation runs as ``viewer``."""
        self._authentication = Authentication(viewer=viewer)

    async def viewer(self) -> Viewer | None:
        """The logged-in caller, or ``None``; raises if their session could not be checked."""
        authentication = await self.authenticate()
        if authentication.error is not None:
            raise authentication.error
        return authentication.viewer

    async def session_still_live(self) -> bool:
        """Check the session again, now (a running subscription asks before each message).

        While Redis is unreachable this waits for it: an outage is not a logout.
        """

        async def check() -> bool:
            authentication = await self._check_credentials(fresh=True)
            if authentication.error is not None:
                raise authentication.error
            return authentication.viewer is not None

        return await when_redis_answers(check)

    async def close_slow_consumer(self, reason: str) -> None:
        """End the connection of a subscriber that fell too far behind: close 4480 (the
        messages already sent go first), or over HTTP end the stream with an error."""
        if isinstance(self.request, WebSocket):
            WS_REFUSED.labels("slow").inc()
            with contextlib.suppress(Exception):  # the connection may be closing already
                await self.request.close(code=CLOSE_SLOW_CONSUMER, reason=reason)
            return
        raise slow_consumer(reason)

    async def caller(self) -> Caller:
        viewer = await self.viewer()
        return Caller(user_id=viewer.user_id if viewer else None, ip=self.client_ip)
