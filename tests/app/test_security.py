from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from app.kit.security import BodySizeLimitMiddleware

LIMIT = 2048


async def echo_length(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(len(await request.body())))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=[Route("/", echo_length, methods=["POST"])])
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=LIMIT)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


async def test_bodies_up_to_the_limit_pass(http: httpx.AsyncClient) -> None:
    response = await http.post("/", content=b"x" * LIMIT)
    assert (response.status_code, response.text) == (200, str(LIMIT))


async def test_a_declared_length_over_the_limit_is_refused_unread(http: httpx.AsyncClient) -> None:
    response = await http.post("/", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.json() == {
        "errors": [
            {
                "message": f"request body too large: the limit is {LIMIT} bytes",
                "extensions": {"code": "PAYLOAD_TOO_LARGE"},
            }
        ]
    }


async def test_a_streamed_body_is_cut_off_at_the_limit(http: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1000

    response = await http.post("/", content=chunks())
    assert response.status_code == 413


async def test_a_malformed_content_length_is_refused(http: httpx.AsyncClient) -> None:
    response = await http.post("/", content=b"{}", headers={"content-length": "-1"})
    assert response.status_code == 413
