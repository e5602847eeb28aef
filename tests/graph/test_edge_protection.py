"""Trusted proxies, /metrics in production and the per-account login throttle, in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette

from app.asgi import create_app
from app.config import Environment, Settings
from app.services import Services
from tests.support.api import asgi_client, post
from tests.support.factories import PASSWORD, create_user, unique_email

METRICS_TOKEN = "m" * 40
LOGIN = """mutation($e: String!, $p: String!) { login(email: $e, password: $p) {
  token errors { code message } } }"""


@pytest.fixture(scope="module")
async def edge_app(settings: Settings) -> AsyncIterator[Starlette]:
    tuned = settings.model_copy(
        update={
            "env": Environment.PRODUCTION,
            "metrics_token": METRICS_TOKEN,
            "rate_limits_per_ip": {"login": 2, "register": 10},
            "login_failures_per_account": 3,
        }
    )
    app = create_app(tuned)
    async with app.router.lifespan_context(app):
        yield app


async def test_forwarded_for_is_believed_from_trusted_proxies_only(edge_app: Starlette) -> None:
    email = unique_email()

    async def status(client_ip: str, forwarded: str) -> int:
        async with asgi_client(edge_app, ip=client_ip) as client:
            response = await post(
                client, LOGIN, {"e": email, "p": "x" * 9}, headers={"X-Forwarded-For": forwarded}
            )
            return response.status_code

    # Through the trusted proxy (127.0.0.1), two real clients each get their own limit.
    assert [await status("127.0.0.1", "198.51.100.1") for _ in range(3)] == [200, 200, 429]
    assert await status("127.0.0.1", "198.51.100.2") == 200
    # A client that is not a proxy cannot pick its own address with the header.
    untrusted = "192.0.2.77"
    assert [await status(untrusted, f"198.51.100.{i}") for i in range(3, 6)] == [200, 200, 429]


async def test_metrics_in_production_need_loopback_or_the_token(edge_app: Starlette) -> None:
    async with asgi_client(edge_app, ip="192.0.2.1") as outsider:
        assert (await outsider.get("/metrics")).status_code == 404
        wrong = await outsider.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 404
        scrape = await outsider.get(
            "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )
        assert scrape.status_code == 200
        assert "tradegraph_ws_connections" in scrape.text
    async with asgi_client(edge_app, ip="127.0.0.1") as local:
        assert (await local.get("/metrics")).status_code == 200
        # Through the proxy, the caller is the forwarded client, not loopback.
        proxied = await local.get("/metrics", headers={"X-Forwarded-For": "192.0.2.1"})
        assert proxied.status_code == 404


async def _login(app: Starlette, email: str, password: str) -> dict[str, Any]:
    async with asgi_client(app) as client:  # a new address each time: the IP limit stays out
        response = await post(client, LOGIN, {"e": email, "p": password})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["data"]["login"]
    return result


async def test_failed_logins_are_throttled_per_account(
    edge_app: Starlette, services: Services
) -> None:
    user = await create_user(services)
    for _ in range(3):
        wrong = await _login(edge_app, user.email, "wrong password")
        assert wrong["errors"] == [
            {"code": "INVALID_CREDENTIALS", "message": "wrong email or password"}
        ]
    locked = await _login(edge_app, user.email, PASSWORD)  # even the right password, now
    assert locked["token"] is None
    [error] = locked["errors"]
    assert error["code"] == "LOGIN_LOCKED"
    assert error["message"].startswith("too many failed logins for this account; try again in")
    # An email nobody has is throttled the same way: the refusal says nothing about accounts.
    nobody = unique_email("nobody")
    for _ in range(3):
        await _login(edge_app, nobody, "wrong password")
    [same] = (await _login(edge_app, nobody, "wrong password"))["errors"]
    assert same["message"].startswith("too many failed logins for this account")
    # Other accounts are untouched, and a success clears the count.
    other = await create_user(services)
    await _login(edge_app, other.email, "wrong password")
    assert (await _login(edge_app, other.email, PASSWORD))["errors"] == []
