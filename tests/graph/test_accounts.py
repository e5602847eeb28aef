"""Sign-up, login, sessions and `me`, through the ASGI app over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from starlette.applications import Starlette

from app.config import Settings
from app.kit.auth import issue_access_token
from app.services import Services
from tests.support.api import asgi_client, error_codes, graphql, post
from tests.support.factories import (
    PASSWORD,
    create_user,
    login,
    unique_email,
    unique_username,
)

REGISTER = """
mutation($input: RegisterInput!) {
  register(input: $input) {
    token
    user { id email username kycStatus feeTier feeTierOverride role }
    errors { code field message }
  }
}
"""
LOGIN = """
mutation($email: String!, $password: String!) {
  login(email: $email, password: $password) {
    token user { id email } errors { code field message }
  }
}
"""
ME = "{ me { id email username kycStatus feeTier role } }"


async def register(app: Starlette, **fields: str) -> dict[str, Any]:
    async with asgi_client(app) as client:
        body = await graphql(client, REGISTER, {"input": fields})
    payload: dict[str, Any] = body["data"]["register"]
    return payload


async def test_register_creates_a_pending_trader_and_logs_them_in(
    app: Starlette, services: Services, settings: Settings
) -> None:
    email, username = unique_email(), unique_username()
    payload = await register(app, email=email.upper(), username=username, password=PASSWORD)

    assert payload["errors"] == []
    user = payload["user"]
    assert user == {
        "id": user["id"],
        "email": email,
        "username": username,
        "kycStatus": "PENDING",
        "feeTier": 1,
        "feeTierOverride": False,
        "role": "USER",
    }
    claims = jwt.decode(payload["token"], settings.jwt_secret, algorithms=["HS256"])
    assert claims["sub"] == user["id"]
    assert claims["exp"] - claims["iat"] == 24 * 3600
    assert claims["jti"]

    session_key = services.keys.session(int(user["id"]))
    session = await services.redis.hgetall(session_key)
    assert session["token"] == payload["token"]
    assert session["permissions"] == '["trade"]'
    assert datetime.fromisoformat(str(session["lastActivity"])) > datetime.now(UTC) - timedelta(
        minutes=1
    )
    assert 24 * 3600 - 60 < await services.redis.ttl(session_key) <= 24 * 3600

    async with asgi_client(app) as client:
        me = await graphql(client, ME, token=payload["token"])
    assert me == {
        "data": {
            "me": {
                "id": user["id"],
                "email": email,
                "username": username,
                "kycStatus": "PENDING",
                "feeTier": 1,
                "role": "USER",
            }
        }
    }


async def test_register_reports_every_invalid_field(app: Starlette) -> None:
    payload = await register(app, email="not-an-email", username="x!", password="short")
    assert payload["token"] is None and payload["user"] is None
    assert payload["errors"] == [
        {
            "code": "INVALID_INPUT",
            "field": "email",
            "message": "not a valid email address: 'not-an-email'",
        },
        {
            "code": "INVALID_INPUT",
            "field": "username",
            "message": "username must be 3–50 letters, digits, '_', '.' or '-'",
        },
        {
            "code": "INVALID_INPUT",
            "field": "password",
            "message": "password must be at least 8 characters",
        },
    ]


async def test_register_refuses_a_taken_email_or_username(
    app: Starlette, services: Services
) -> None:
    existing = await create_user(services)
    assert existing.username is not None
    payload = await register(
        app, email=existing.email, username=existing.username.upper(), password=PASSWORD
    )
    assert payload["token"] is None
    assert payload["errors"] == [
        {"code": "EMAIL_TAKEN", "field": "email", "message": "that email is already registered"},
        {"code": "USERNAME_TAKEN", "field": "username", "message": "that username is taken"},
    ]


async def test_login_returns_a_token_that_me_accepts(app: Starlette, services: Services) -> None:
    user = await create_user(services, kyc_status="approved")
    async with asgi_client(app) as client:
        body = await graphql(
            client, LOGIN, {"email": f"  {user.email.upper()} ", "password": PASSWORD}
        )
        payload = body["data"]["login"]
        assert payload["errors"] == []
        assert payload["user"] == {"id": str(user.id), "email": user.email}
        me = await graphql(client, "{ me { id kycStatus } }", token=payload["token"])
    assert me == {"data": {"me": {"id": str(user.id), "kycStatus": "APPROVED"}}}


@pytest.mark.parametrize("case", ["wrong password", "unknown email", "system account"])
async def test_login_refuses_bad_credentials_alike(
    app: Starlette, services: Services, case: str
) -> None:
    user = await create_user(services)
    email, password = {
        "wrong password": (user.email, "not the password"),
        "unknown email": (unique_email(), PASSWORD),
        "system account": ("fees@tradegraph.internal", "!"),
    }[case]
    async with asgi_client(app) as client:
        body = await graphql(client, LOGIN, {"email": email, "password": password})
    assert body["data"]["login"] == {
        "token": None,
        "user": None,
        "errors": [
            {"code": "INVALID_CREDENTIALS", "field": None, "message": "wrong email or password"}
        ],
    }


async def test_a_new_login_ends_the_previous_session(app: Starlette, services: Services) -> None:
    user = await create_user(services)
    first = await login(services, user)
    second = await login(services, user)
    async with asgi_client(app) as client:
        assert (await graphql(client, "{ me { id } }", token=second))["data"] == {
            "me": {"id": str(user.id)}
        }
        refused = await post(client, "{ me { id } }", token=first)
    assert refused.status_code == 401
    assert refused.json() == {
        "data": None,
        "errors": [
            {
                "message": "session ended (logged out, or replaced by a newer login)",
                "extensions": {"code": "UNAUTHENTICATED"},
            }
        ],
    }


async def test_logout_ends_access_at_once(app: Starlette, services: Services) -> None:
    user = await create_user(services)
    token = await login(services, user)
    async with asgi_client(app) as client:
        assert (await graphql(client, "mutation { logout }", token=token))["data"] == {
            "logout": True
        }
        assert await services.redis.exists(services.keys.session(user.id)) == 0
        after = await post(client, "{ me { id } }", token=token)
        assert after.status_code == 401
        assert error_codes(after.json()) == [((), "UNAUTHENTICATED")]
        anonymous = await graphql(client, "mutation { logout }")
    assert anonymous == {"data": {"logout": False}}


async def test_anonymous_me_is_unauthenticated_and_the_rest_stands(client: Any) -> None:
    body = await graphql(client, "{ me { id } markets { symbol } }")
    assert body["data"] == {"me": None, "markets": [{"symbol": "BTC-USDT"}, {"symbol": "ETH-USDT"}]}
    assert body["errors"] == [
        {
            "message": "you must be logged in",
            "locations": [{"line": 1, "column": 3}],
            "path": ["me"],
            "extensions": {"code": "UNAUTHENTICATED"},
        }
    ]


def _forged(settings: Settings, user_id: int) -> str:
    return issue_access_token("not-our-secret-" + "y" * 32, user_id, ttl=timedelta(hours=1)).token


def _expired(settings: Settings, user_id: int) -> str:
    issued = datetime.now(UTC) - timedelta(days=2)
    return issue_access_token(settings.jwt_secret, user_id, ttl=timedelta(days=1), now=issued).token


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_forged, "invalid access token"),
        (_expired, "access token expired; log in again"),
        (lambda settings, user_id: "garbage", "invalid access token"),
    ],
    ids=["forged", "expired", "garbage"],
)
async def test_bad_tokens_are_refused_over_http_and_nothing_runs(
    app: Starlette, services: Services, settings: Settings, make: Any, message: str
) -> None:
    user = await create_user(services)
    await login(services, user)  # a live session exists; the bad token is still refused
    async with asgi_client(app) as client:
        response = await post(
            client, "{ me { id } markets { symbol } }", token=make(settings, user.id)
        )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json() == {
        "data": None,
        "errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}],
    }


async def test_an_authorization_header_that_is_not_bearer_is_refused(app: Starlette) -> None:
    async with asgi_client(app) as client:
        response = await client.post(
            "/graphql",
            json={"query": "{ markets { symbol } }"},
            headers={"Authorization": "Basic eDp5"},
        )
    assert response.status_code == 401
    assert error_codes(response.json()) == [((), "UNAUTHENTICATED")]


async def test_every_response_carries_a_request_id(client: Any) -> None:
    response = await post(client, "{ markets { symbol } }")
    assert len(response.headers["x-request-id"]) == 32
    echoed = await post(client, "{ markets { symbol } }", headers={"X-Request-ID": "req-12345678"})
    assert echoed.headers["x-request-id"] == "req-12345678"
