"""Talking GraphQL to the in-process ASGI app over real HTTP semantics (httpx)."""

from __future__ import annotations

import random
from typing import Any

import httpx
from starlette.types import ASGIApp


def random_ip() -> str:
    """A client address no other test uses, so per-IP rate limits do not collide."""
    return ".".join(str(random.randint(1, 254)) for _ in range(4))


def asgi_client(app: ASGIApp, ip: str | None = None) -> httpx.AsyncClient:
    """A client of ``app`` (whose lifespan the caller runs) calling from ``ip``."""
    transport = httpx.ASGITransport(app=app, client=(ip or random_ip(), 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def post(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post(
        "/graphql",
        json={"query": query, "variables": variables or {}},
        headers={**bearer(token), **(headers or {})},
    )


async def graphql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
) -> dict[str, Any]:
    """POST an operation that must be answered with 200; return the JSON body."""
    response = await post(client, query, variables, token=token)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def error_codes(body: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    """``[(path, extensions.code)]`` of a response's top-level errors, in order."""
    return [
        (tuple(error.get("path") or ()), error.get("extensions", {}).get("code"))
        for error in body.get("errors", [])
    ]
