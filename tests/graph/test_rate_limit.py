"""Rate limits: over the limit → HTTP 429, Retry-After, RATE_LIMITED, and nothing runs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from graphql import parse
from sqlalchemy import select
from starlette.applications import Starlette

from app.accounts.models import User
from app.asgi import create_app
from app.config import Settings
from app.services import Services
from graph.extensions import root_fields
from tests.support.api import asgi_client, post, random_ip
from tests.support.factories import PASSWORD, create_user, login, unique_email, unique_username

LOGIN = 'mutation { login(email: "nobody@example.com", password: "x") { errors { code } } }'
REGISTER = """mutation($input: RegisterInput!) {
  register(input: $input) { user { id } errors { code } }
}"""


@pytest.fixture(scope="module")
async def strict_app(settings: Settings) -> AsyncIterator[Starlette]:
    strict = settings.model_copy(
        update={
            "rate_limits_per_ip": {"login": 3, "register": 2},
            "rate_limits_per_user": {"markets": 8},
            "rate_limit_per_user": 5,
            "rate_limit_per_ip": 4,
        }
    )
    application = create_app(strict)
    async with application.router.lifespan_context(application):
        yield application


async def test_login_is_limited_per_client_ip(strict_app: Starlette) -> None:
    ip = random_ip()
    async with asgi_client(strict_app, ip) as client:
        for _ in range(3):
            response = await post(client, LOGIN)
            assert response.status_code == 200
            assert response.json()["data"]["login"]["errors"] == [{"code": "INVALID_CREDENTIALS"}]
        refused = await post(client, LOGIN)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json() == {
        "data": None,
        "errors": [
            {
                "message": "rate limit exceeded for login: 3 per minute; "
                f"retry in {refused.headers['retry-after']} s",
                "extensions": {
                    "code": "RATE_LIMITED",
                    "field": "login",
                    "limitPerMinute": 3,
                    "retryAfter": int(refused.headers["retry-after"]),
                },
            }
        ],
    }
    async with asgi_client(strict_app, random_ip()) as elsewhere:
        assert (await post(elsewhere, LOGIN)).status_code == 200


async def test_a_refused_register_creates_nothing(
    strict_app: Starlette, services: Services
) -> None:
    async with asgi_client(strict_app) as client:
        for _ in range(2):
            fields = {"email": unique_email(), "username": unique_username(), "password": PASSWORD}
            assert (await post(client, REGISTER, {"input": fields})).status_code == 200
        email = unique_email()
        fields = {"email": email, "username": unique_username(), "password": PASSWORD}
        refused = await post(client, REGISTER, {"input": fields})
    assert refused.status_code == 429
    async with services.sessions() as session:
        found = await session.execute(select(User).where(User.email == email))
    assert found.scalar_one_or_none() is None


async def test_logged_in_callers_are_limited_per_user_and_field(
    strict_app: Starlette, services: Services
) -> None:
    user, other = await create_user(services), await create_user(services)
    token, other_token = await login(services, user), await login(services, other)
    async with asgi_client(strict_app) as client:
        for _ in range(5):
            assert (await post(client, "{ me { id } }", token=token)).status_code == 200
        assert (await post(client, "{ me { id } }", token=token)).status_code == 429
        # other fields and other users have counters of their own
        assert (await post(client, "{ markets { symbol } }", token=token)).status_code == 200
        assert (await post(client, "{ me { id } }", token=other_token)).status_code == 200
    key = services.keys.rate_limit(str(user.id), "me")
    assert await services.redis.get(key) == "6"
    assert 0 < await services.redis.ttl(key) <= 60


async def test_aliases_and_fragments_count_every_use(
    strict_app: Starlette, services: Services
) -> None:
    token = await login(services, await create_user(services))
    query = """
    query { a: me { id } b: me { id } ...More }
    fragment More on Query { c: me { id } ... on Query { d: me { id } } }
    """
    async with asgi_client(strict_app) as client:
        assert (await post(client, query, token=token)).status_code == 200
        refused = await post(client, query, token=token)
    assert refused.status_code == 429
    assert refused.json()["errors"][0]["extensions"]["field"] == "me"


async def test_anonymous_callers_are_limited_per_ip(strict_app: Starlette) -> None:
    async with asgi_client(strict_app) as client:
        statuses = [(await post(client, "{ markets { symbol } }")).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]


def test_root_fields_follow_fragments_and_skip_typename() -> None:
    document = parse(
        """
        query Q { __typename a: markets { symbol } ...F ... on Query { me { id } } }
        fragment F on Query { market(symbol: "x") { symbol } ...F }
        mutation M { login(email: "", password: "") { token } }
        """
    )
    assert root_fields(document, "Q") == ["markets", "market", "me"]
    assert root_fields(document, "M") == ["login"]
    assert root_fields(document, "nope") == []
