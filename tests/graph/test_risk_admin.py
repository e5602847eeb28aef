"""Admins' risk views and login protection through the API: riskEvents filters, resolving
with a note, LOGIN events (failed_login, new_ip, login_locked) with their rows, the lockout's
LOGIN_LOCKED error, and the alert on an admin's riskAlerts subscription."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from gql.transport.websockets import WebsocketsTransport
from starlette.applications import Starlette

from app.accounts.service import AccountError
from app.kit.redis import Keys, create_redis
from app.services import Services
from tests.support.api import asgi_client, graphql
from tests.support.factories import PASSWORD, create_admin, create_user, login
from tests.support.live import Api, Watch, subscribed
from tests.support.processes import Platform

LOGIN = """mutation($e: String!, $p: String!) { login(email: $e, password: $p) {
  token errors { code message } } }"""
EVENTS = """query($u: ID, $t: RiskEventType, $s: RiskSeverity, $r: Boolean, $since: DateTime,
  $until: DateTime, $rule: String) {
  riskEvents(userId: $u, eventType: $t, severity: $s, resolved: $r, since: $since,
    until: $until, rule: $rule, first: 50) {
    edges { node { id eventType severity rule description metadata resolved resolutionNote
      resolvedAt resolvedBy { id } user { id } } } } }"""
RESOLVE = """mutation($id: ID!, $note: String) { resolveRiskEvent(id: $id, note: $note) {
  riskEvent { resolved resolutionNote resolvedAt resolvedBy { id } } errors { code field } } }"""


async def drain(services: Services) -> None:
    """Wait for the login events the API writes just after answering."""
    monitor = services.accounts.monitor
    assert monitor is not None
    await monitor.drain()


async def call(app: Starlette, query: str, token: str | None = None, **variables: Any) -> Any:
    async with asgi_client(app) as client:
        return await graphql(client, query, variables, token=token)


async def events(app: Starlette, admin: str, **filters: Any) -> list[dict[str, Any]]:
    body = await call(app, EVENTS, admin, **filters)
    assert "errors" not in body, body
    return [edge["node"] for edge in body["data"]["riskEvents"]["edges"]]


async def test_a_failed_login_is_a_login_event_an_admin_can_filter_and_resolve(
    app: Starlette, services: Services
) -> None:
    user = await create_user(services)
    admin_user = await create_admin(services)
    admin = await login(services, admin_user)
    body = await call(app, LOGIN, e=user.email, p="not the password")
    assert body["data"]["login"]["errors"][0]["code"] == "INVALID_CREDENTIALS"
    await drain(services)

    (event,) = await events(app, admin, u=str(user.id), rule="failed_login")
    assert (event["eventType"], event["severity"], event["rule"]) == (
        "LOGIN",
        "LOW",
        "failed_login",
    )
    assert event["user"] == {"id": str(user.id)}
    assert event["metadata"]["attempts"] == 1 and "ip" in event["metadata"]
    # Each filter narrows to it or away from it.
    now = datetime.now(UTC)
    assert [e["id"] for e in await events(app, admin, u=str(user.id), t="LOGIN")] == [event["id"]]
    assert await events(app, admin, u=str(user.id), t="TRADE") == []
    assert await events(app, admin, u=str(user.id), s="HIGH") == []
    assert await events(app, admin, u=str(user.id), r=True) == []
    assert (
        await events(app, admin, u=str(user.id), since=(now + timedelta(minutes=1)).isoformat())
        == []
    )
    assert (
        len(
            await events(app, admin, u=str(user.id), until=(now + timedelta(minutes=1)).isoformat())
        )
        == 1
    )

    resolved = await call(app, RESOLVE, admin, id=event["id"], note="customer typo")
    payload = resolved["data"]["resolveRiskEvent"]
    assert payload["errors"] == []
    assert payload["riskEvent"]["resolved"] is True
    assert payload["riskEvent"]["resolutionNote"] == "customer typo"
    assert payload["riskEvent"]["resolvedBy"] == {"id": str(admin_user.id)}
    (after,) = await events(app, admin, u=str(user.id), r=True)
    assert after["resolutionNote"] == "customer typo" and after["resolvedAt"] is not None
    too_long = await call(app, RESOLVE, admin, id=event["id"], note="x" * 201)
    assert too_long["data"]["resolveRiskEvent"]["errors"] == [
        {"code": "INVALID_INPUT", "field": "note"}
    ]


async def test_until_before_since_is_a_typed_error_and_traders_may_not_look(
    app: Starlette, services: Services
) -> None:
    admin = await login(services, await create_admin(services))
    now = datetime.now(UTC)
    body = await call(
        app, EVENTS, admin, since=now.isoformat(), until=(now - timedelta(hours=1)).isoformat()
    )
    assert body["errors"][0]["extensions"]["code"] == "INVALID_INPUT"
    trader = await login(services, await create_user(services))
    body = await call(app, EVENTS, trader)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_a_login_from_a_new_address_is_an_event_and_a_known_one_is_not(
    app: Starlette, services: Services
) -> None:
    user = await create_user(services)
    admin = await login(services, await create_admin(services))
    await services.accounts.login(email=user.email, password=PASSWORD, ip="10.20.0.1")
    await services.accounts.login(email=user.email, password=PASSWORD, ip="10.20.0.1")
    await drain(services)
    assert await events(app, admin, u=str(user.id), rule="new_ip") == []  # the first address
    await services.accounts.login(email=user.email, password=PASSWORD, ip="10.20.0.2")
    await drain(services)
    (event,) = await events(app, admin, u=str(user.id), rule="new_ip")
    assert (event["eventType"], event["severity"]) == ("LOGIN", "LOW")
    assert event["metadata"]["ip"] == "10.20.0.2" and event["metadata"]["known_ips"] == 1


async def test_repeated_failures_lock_the_login_with_login_locked_and_one_event(
    app: Starlette, services: Services
) -> None:
    user = await create_user(services)
    admin = await login(services, await create_admin(services))
    limit = services.settings.login_failures_per_account
    for _ in range(limit):
        with pytest.raises(AccountError):
            await services.accounts.login(email=user.email, password="wrong", ip="10.30.0.1")
    body = await call(app, LOGIN, e=user.email, p=PASSWORD)  # the right password, locked
    (error,) = body["data"]["login"]["errors"]
    assert error["code"] == "LOGIN_LOCKED"
    assert error["message"].startswith("too many failed logins for this account; try again in ")
    await drain(services)
    (locked,) = await events(app, admin, u=str(user.id), rule="login_locked")
    assert (locked["eventType"], locked["severity"]) == ("LOGIN", "MEDIUM")
    assert len(await events(app, admin, u=str(user.id), rule="failed_login")) == limit


async def test_an_admin_subscribed_to_risk_alerts_sees_a_failed_login(
    platform: Platform, services: Services
) -> None:
    user = await create_user(services)
    admin = Api(platform, await login(services, await create_admin(services)))
    alerts = Watch(
        platform,
        "subscription { riskAlerts { id eventType severity rule user { id } } }",
        admin.token,
        WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL,
    ).start()
    redis = create_redis(services.settings.redis_url or "")
    try:
        await subscribed(redis, Keys(services.settings.redis_prefix).risk_channel(), alerts)
    finally:
        await redis.aclose()
    await Api(platform)(LOGIN, e=user.email, p="wrong password")
    items = await alerts.wait_for(1)
    mine = [i["riskAlerts"] for i in items if i["riskAlerts"]["user"] == {"id": str(user.id)}]
    assert mine and mine[0]["rule"] == "failed_login" and mine[0]["eventType"] == "LOGIN"
    await alerts.stop_quietly()
