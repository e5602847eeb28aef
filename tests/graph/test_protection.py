"""Hostile and malformed requests get clear errors and change nothing; unexpected errors are
masked; production hides suggestions, introspection and GraphiQL from all but admins."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette

from app.accounts.models import User
from app.asgi import create_app
from app.config import Environment, Settings
from app.services import Services
from tests.support.api import asgi_client, bearer, graphql, post
from tests.support.factories import create_admin, create_user, login

INTROSPECTION = "{ __schema { queryType { name } } }"


async def kyc_of(services: Services, user_id: int) -> str:
    async with services.sessions() as session:
        user = await session.get(User, user_id)
    assert user is not None
    return user.kyc_status


async def admin_and_target(services: Services) -> tuple[str, User]:
    return await login(services, await create_admin(services)), await create_user(services)


async def test_a_query_50_deep_is_refused_and_changes_nothing(
    app: Starlette, services: Services
) -> None:
    token, target = await admin_and_target(services)
    nested = "riskEvents { user { " * 24 + "id" + " } }" * 24
    mutation = f'mutation {{ approveKyc(userId: "{target.id}") {{ user {{ {nested} }} }} }}'
    async with asgi_client(app) as client:
        body = await graphql(client, mutation, token=token)
    assert body["data"] is None
    assert [(e["message"], e["extensions"]) for e in body["errors"]] == [
        ("'anonymous' exceeds maximum operation depth of 12", {"code": "GRAPHQL_VALIDATION_FAILED"})
    ]
    assert await kyc_of(services, target.id) == "pending"


async def test_a_thousand_aliases_are_refused_and_change_nothing(
    app: Starlette, services: Services
) -> None:
    token, target = await admin_and_target(services)
    short = " ".join(f"a{i}: __typename" for i in range(1000))
    long = " ".join(
        f'a{i}: approveKyc(userId: "{target.id}") {{ errors {{ code }} }}' for i in range(1000)
    )
    async with asgi_client(app) as client:
        aliases = await graphql(client, f"mutation {{ {short} }}", token=token)
        tokens = await graphql(client, f"mutation {{ {long} }}", token=token)
    assert [(e["message"], e["extensions"]) for e in aliases["errors"]] == [
        ("1000 aliases found. Allowed: 30", {"code": "GRAPHQL_VALIDATION_FAILED"})
    ]
    assert [(e["message"], e["extensions"]) for e in tokens["errors"]] == [
        (
            "Syntax Error: Document contains more than 5000 tokens. Parsing aborted.",
            {"code": "GRAPHQL_PARSE_FAILED"},
        )
    ]
    assert aliases["data"] is None and tokens["data"] is None
    assert await kyc_of(services, target.id) == "pending"


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
async def test_a_5_mb_body_is_refused_with_413_and_changes_nothing(
    app: Starlette, services: Services, declared: bool
) -> None:
    token, target = await admin_and_target(services)
    document = {
        "query": f'mutation {{ approveKyc(userId: "{target.id}") {{ errors {{ code }} }} }}',
        "variables": {"padding": "x" * 5_000_000},
    }
    body = json.dumps(document).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    async with asgi_client(app) as client:
        response = await client.post(
            "/graphql",
            content=body if declared else chunks(),
            headers={"content-type": "application/json", **bearer(token)},
        )
    assert response.status_code == 413
    assert response.json() == {
        "errors": [
            {
                "message": "request body too large: the limit is 262144 bytes",
                "extensions": {"code": "PAYLOAD_TOO_LARGE"},
            }
        ]
    }
    assert await kyc_of(services, target.id) == "pending"


async def test_a_mutation_over_get_is_refused_and_changes_nothing(
    app: Starlette, services: Services
) -> None:
    token, target = await admin_and_target(services)
    async with asgi_client(app) as client:
        response = await client.get(
            "/graphql",
            params={
                "query": f'mutation {{ approveKyc(userId: "{target.id}") {{ errors {{ code }} }} }}'
            },
            headers=bearer(token),
        )
        query = await client.get("/graphql", params={"query": "{ markets { symbol } }"})
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {
                "message": "mutations are not allowed when using GET",
                "extensions": {"code": "BAD_REQUEST"},
            }
        ]
    }
    assert await kyc_of(services, target.id) == "pending"
    assert query.status_code == 200
    assert query.json() == {"data": {"markets": [{"symbol": "BTC-USDT"}, {"symbol": "ETH-USDT"}]}}


@pytest.mark.parametrize(
    ("content", "content_type", "message"),
    [
        (b"{not json", "application/json", "Unable to parse request body as JSON"),
        (
            b'{"query": 5}',
            "application/json",
            "The GraphQL operation's `query` must be a string or null, if provided.",
        ),
        (b"query=%7B%7D", "text/plain", "Unsupported content type"),
        (b"{}", "application/json", "No GraphQL query found in the request"),
    ],
    ids=["bad-json", "query-not-a-string", "text-plain", "no-query"],
)
async def test_malformed_requests_get_json_errors(
    client: Any, content: bytes, content_type: str, message: str
) -> None:
    response = await client.post(
        "/graphql", content=content, headers={"content-type": content_type}
    )
    assert response.status_code == 400
    assert response.json() == {
        "errors": [{"message": message, "extensions": {"code": "BAD_REQUEST"}}]
    }


async def test_variables_of_the_wrong_type_are_invalid_input(client: Any) -> None:
    body = await graphql(client, "query($s: String!) { market(symbol: $s) { symbol } }", {"s": 5})
    assert [(e["message"], e["extensions"]) for e in body["errors"]] == [
        (
            "Variable '$s' has invalid value: String cannot represent a non string value: 5",
            {"code": "INVALID_INPUT"},
        )
    ]


async def test_unexpected_errors_are_masked_and_logged_with_the_request_id(
    app: Starlette, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def boom(symbol: str) -> None:
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr(app.state.services.markets, "get", boom)
    with caplog.at_level(logging.ERROR, logger="tradegraph.graphql"):
        async with asgi_client(app) as client:
            response = await post(
                client, '{ market(symbol: "BTC-USDT") { symbol } markets { symbol } }'
            )
    request_id = response.headers["x-request-id"]
    assert response.status_code == 200
    assert response.json() == {
        "data": {"market": None, "markets": [{"symbol": "BTC-USDT"}, {"symbol": "ETH-USDT"}]},
        "errors": [
            {
                "message": "Internal server error",
                "locations": [{"line": 1, "column": 3}],
                "path": ["market"],
                "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
            }
        ],
    }
    assert "hunter2" not in response.text
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert len(logged) == 1
    assert "hunter2" in logged[0].getMessage()
    assert logged[0].exc_info is not None


@pytest.fixture(scope="module")
async def production_app(settings: Settings) -> AsyncIterator[Starlette]:
    application = create_app(settings.model_copy(update={"env": Environment.PRODUCTION}))
    async with application.router.lifespan_context(application):
        yield application


async def test_production_strips_field_suggestions(
    production_app: Starlette, app: Starlette
) -> None:
    async with asgi_client(production_app) as client:
        production = await graphql(client, "{ markts { symbol } }")
    async with asgi_client(app) as client:
        development = await graphql(client, "{ markts { symbol } }")
    assert production["errors"][0]["message"] == "Cannot query field 'markts' on type 'Query'."
    assert development["errors"][0]["message"] == (
        "Cannot query field 'markts' on type 'Query'. Did you mean 'markets' or 'market'?"
    )


async def test_production_introspection_is_for_admins_only(
    production_app: Starlette, services: Services
) -> None:
    trader = await login(services, await create_user(services))
    admin = await login(services, await create_admin(services))
    async with asgi_client(production_app) as client:
        anonymous = await graphql(client, INTROSPECTION)
        as_trader = await graphql(client, INTROSPECTION, token=trader)
        as_admin = await graphql(client, INTROSPECTION, token=admin)
    assert anonymous["data"] is None
    assert [(e["message"], e["extensions"]["code"]) for e in anonymous["errors"]] == [
        (
            "GraphQL introspection has been disabled, but the requested query contained "
            f"the field '{field}'.",
            "GRAPHQL_VALIDATION_FAILED",
        )
        for field in ("__schema", "queryType")
    ]
    assert as_trader == anonymous
    assert as_admin == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


async def test_introspection_is_open_outside_production(client: Any) -> None:
    assert await graphql(client, INTROSPECTION) == {
        "data": {"__schema": {"queryType": {"name": "Query"}}}
    }


async def test_production_graphiql_is_for_admins_only(
    production_app: Starlette, services: Services
) -> None:
    trader = await login(services, await create_user(services))
    admin = await login(services, await create_admin(services))
    async with asgi_client(production_app) as client:
        html = {"accept": "text/html"}
        anonymous = await client.get("/graphql", headers=html)
        as_trader = await client.get("/graphql", headers={**html, **bearer(trader)})
        as_admin = await client.get("/graphql", headers={**html, **bearer(admin)})
    assert (anonymous.status_code, as_trader.status_code) == (404, 404)
    assert as_admin.status_code == 200
    assert "graphiql" in as_admin.text.lower()
