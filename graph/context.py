from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from app.services import Services


@dataclass
class Context:
    request: Request | WebSocket
    response: Response | None
    services: Services
