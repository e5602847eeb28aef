"""The real `tradegraph api` process: auth over HTTP with the gql client, and over WebSocket
with both subprotocols (graphql-transport-ws and the legacy graphql-ws)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from gql import Client, GraphQLRequest, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.config import Settings
from app.kit.auth import issue_access_token
from app.services import Services
from tests.support.factories import PASSWORD, create_user, login
from tests.support.processes import Platform

pytestmark = pytest.mark.e2e

TRANSPORT_WS = WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL  # "graphql-transport-ws"
LEGACY_WS = WebsocketsTransport.APOLLO_SUBPROTOCOL  # "graphql-ws"
SUBPROTOCOLS = [TRANSPORT_WS, LEGACY_WS]


def ws_url(platform: Platform) -> str:
    return platform.url.replace("http://", "ws://") + "/graphql"


async def test_login_and_me_over_http_with_gql(platform: Platform, services: Services) -> None:
    user = await create_user(services)
    transport = HTTPXAsyncTransport(url=f"{platform.url}/graphql")
    async with Client(transport=transport) as session:
        result = await session.execute(
            GraphQLRequest(
                """mutation($email: String!, $password: String!) {
                  login(email: $email, password: $password) { token errors { code } }
                }""",
                variable_values={"email": user.email, "password": PASSWORD},
            )
        )
    token = result["login"]["token"]
    assert result["login"]["errors"] == []

    authed = HTTPXAsyncTransport(
        url=f"{platform.url}/graphql", headers={"Authorization": f"Bearer {token}"}
    )
    async with Client(transport=authed) as session:
        me = await session.execute(gql("{ me { id email kycStatus } }"))
    assert me == {"me": {"id": str(user.id), "email": user.email, "kycStatus": "PENDING"}}


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
@pytest.mark.parametrize("style", ["Authorization", "token"])
async def test_me_over_websocket_after_connection_init(
    platform: Platform, services: Services, subprotocol: str, style: str
) -> None:
    user = await create_user(services, kyc_status="approved")
    token = await login(services, user)
    payload = {"Authorization": f"Bearer {token}"} if style == "Authorization" else {"token": token}
    transport = WebsocketsTransport(
        url=ws_url(platform), subprotocols=[subprotocol], init_payload=payload
    )
    async with Client(transport=transport) as session:
        result = await session.execute(gql("{ me { id kycStatus } markets { symbol } }"))
    assert result == {
        "me": {"id": str(user.id), "kycStatus": "APPROVED"},
        "markets": [{"symbol": "BTC-USDT"}, {"symbol": "ETH-USDT"}],
    }


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_anonymous_websocket_gets_public_data_and_unauthenticated_me(
    platform: Platform, subprotocol: str
) -> None:
    transport = WebsocketsTransport(url=ws_url(platform), subprotocols=[subprotocol])
    async with Client(transport=transport) as session:
        markets = await session.execute(gql("{ markets { symbol } }"))
        with pytest.raises(TransportQueryError) as refused:
            await session.execute(gql("{ me { id } }"))
    assert markets == {"markets": [{"symbol": "BTC-USDT"}, {"symbol": "ETH-USDT"}]}
    assert refused.value.errors is not None
    assert [e["extensions"]["code"] for e in refused.value.errors] == ["UNAUTHENTICATED"]


async def _bad_tokens(settings: Settings, services: Services) -> dict[str, dict[str, Any]]:
    user = await create_user(services)
    logged_out = await login(services, user)
    await services.accounts.logout(logged_out)
    expired = issue_access_token(
        settings.jwt_secret,
        user.id,
        ttl=timedelta(hours=1),
        now=datetime.now(UTC) - timedelta(hours=2),
    ).token
    forged = issue_access_token("someone-else-" + "z" * 32, user.id, ttl=timedelta(hours=1))
    return {
        "forged": {"Authorization": f"Bearer {forged.token}"},
        "expired": {"token": expired},
        "logged out": {"Authorization": f"Bearer {logged_out}"},
        "not bearer": {"Authorization": f"Token {logged_out}"},
    }


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_a_bad_token_closes_the_websocket_with_4403(
    platform: Platform, settings: Settings, services: Services, subprotocol: str
) -> None:
    for name, payload in (await _bad_tokens(settings, services)).items():
        async with connect(ws_url(platform), subprotocols=[subprotocol]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
            messages = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    messages.append(json.loads(await ws.recv()))
        assert closed.value.rcvd is not None, name
        assert closed.value.rcvd.code == 4403, name
        if subprotocol == LEGACY_WS:
            assert [m["type"] for m in messages] == ["connection_error"], name
            assert messages[0]["payload"]["extensions"] == {"code": "UNAUTHENTICATED"}
        else:
            assert messages == [], name


@pytest.mark.parametrize("subprotocol", SUBPROTOCOLS)
async def test_logout_ends_an_open_websocket_s_access(
    platform: Platform, services: Services, subprotocol: str
) -> None:
    user = await create_user(services)
    token = await login(services, user)
    transport = WebsocketsTransport(
        url=ws_url(platform), subprotocols=[subprotocol], init_payload={"token": token}
    )
    async with Client(transport=transport) as session:
        assert await session.execute(gql("{ me { id } }")) == {"me": {"id": str(user.id)}}
        # The logout happens in this process, so the API hears of it a pub/sub hop later
        # (README: the others forget "as they hear it"); on a busy machine the next message
        # on the socket can arrive first.
        await services.accounts.logout(token)
        with pytest.raises(TransportQueryError) as refused:
            async with asyncio.timeout(5):
                while True:
                    await session.execute(gql("{ me { id } }"))
                    await asyncio.sleep(0.05)
    assert refused.value.errors is not None
    assert [(e["message"], e["extensions"]) for e in refused.value.errors] == [
        (
            "session ended (logged out, or replaced by a newer login)",
            {"code": "UNAUTHENTICATED"},
        )
    ]
