"""Admin queries and mutations: what admins can do, and that nobody else can."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, select
from starlette.applications import Starlette

from app.accounts.models import User
from app.risk.models import RiskEvent
from app.services import Services
from tests.support.api import asgi_client, graphql
from tests.support.factories import create_admin, create_risk_event, create_user, login
from tests.support.processes import Platform

USER_FIELDS = "id email username kycStatus feeTier feeTierOverride role"


async def as_admin(app: Starlette, services: Services, query: str, **variables: Any) -> Any:
    token = await login(services, await create_admin(services))
    async with asgi_client(app) as client:
        body = await graphql(client, query, variables, token=token)
    assert "errors" not in body, body
    return body["data"]


async def fetch_user(services: Services, user_id: int) -> User:
    async with services.sessions() as session:
        user = await session.get(User, user_id)
    assert user is not None
    return user


async def fetch_event(services: Services, event_id: int) -> RiskEvent:
    async with services.sessions() as session:
        row = await session.get(RiskEvent, event_id)
    assert row is not None
    return row


async def test_users_is_a_relay_connection_newest_first(app: Starlette, services: Services) -> None:
    created = [await create_user(services) for _ in range(3)]
    query = """
    query($after: String) {
      users(first: 2, after: $after) {
        edges { cursor node { id email } }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      }
    }
    """
    first = (await as_admin(app, services, query))["users"]
    # The admin made by as_admin is the newest user; then ours, newest first.
    assert [edge["node"]["id"] for edge in first["edges"]][1:] == [str(created[2].id)]
    assert first["pageInfo"]["hasNextPage"] is True
    assert first["pageInfo"]["hasPreviousPage"] is False
    assert first["pageInfo"]["endCursor"] == first["edges"][-1]["cursor"]

    second = (await as_admin(app, services, query, after=first["pageInfo"]["endCursor"]))["users"]
    # another admin was created meanwhile, but the cursor keeps the place
    assert [edge["node"] for edge in second["edges"]] == [
        {"id": str(created[1].id), "email": created[1].email},
        {"id": str(created[0].id), "email": created[0].email},
    ]
    assert second["pageInfo"]["hasPreviousPage"] is True


async def test_users_filters_by_kyc_status_and_hides_the_system_account(
    app: Starlette, services: Services
) -> None:
    rejected = await create_user(services, kyc_status="rejected")
    data = await as_admin(
        app,
        services,
        "{ users(first: 100, kycStatus: REJECTED) { edges { node { id kycStatus role } } } }",
    )
    nodes = [edge["node"] for edge in data["users"]["edges"]]
    assert {"id": str(rejected.id), "kycStatus": "REJECTED", "role": "USER"} in nodes
    assert {node["kycStatus"] for node in nodes} == {"REJECTED"}
    everyone = await as_admin(app, services, "{ users(first: 100) { edges { node { role } } } }")
    assert "SYSTEM" not in {edge["node"]["role"] for edge in everyone["users"]["edges"]}


@pytest.mark.parametrize(
    ("arguments", "message", "argument"),
    [
        ("first: 0", "`first` must be between 1 and 100", "first"),
        ("first: 101", "`first` must be between 1 and 100", "first"),
        ('after: "bm90LWEtY3Vyc29y"', "`after` is not a cursor from this list", "after"),
        ('after: "%%%"', "`after` is not a cursor from this list", "after"),
    ],
)
async def test_pagination_arguments_are_checked(
    app: Starlette, services: Services, arguments: str, message: str, argument: str
) -> None:
    token = await login(services, await create_admin(services))
    async with asgi_client(app) as client:
        for field in ("users", "riskEvents"):
            body = await graphql(
                client,
                f"{{ {field}({arguments}) {{ edges {{ cursor }} }} markets {{ symbol }} }}",
                token=token,
            )
            assert body["data"][field] is None
            assert len(body["data"]["markets"]) == 2
            assert [(e["message"], e["extensions"]) for e in body["errors"]] == [
                (message, {"code": "INVALID_INPUT", "argument": argument})
            ]


async def test_risk_events_filter_and_nest_users(app: Starlette, services: Services) -> None:
    trader = await create_user(services)
    high = await create_risk_event(
        services, user=trader, severity="HIGH", event_type="WITHDRAWAL", metadata={"amount": "1.5"}
    )
    await create_risk_event(services, user=trader, severity="HIGH", resolved=True)
    query = """
    { riskEvents(severity: HIGH, resolved: false, first: 100) {
        edges { node { id eventType severity description metadata resolved user { id email } } }
    } }
    """
    data = await as_admin(app, services, query)
    nodes = [edge["node"] for edge in data["riskEvents"]["edges"]]
    assert nodes[0] == {
        "id": str(high.id),
        "eventType": "WITHDRAWAL",
        "severity": "HIGH",
        "description": "self-trade prevented",
        "metadata": {"amount": "1.5"},
        "resolved": False,
        "user": {"id": str(trader.id), "email": trader.email},
    }
    assert all(node["severity"] == "HIGH" and not node["resolved"] for node in nodes)


@contextmanager
def count_queries(app: Starlette, table: str) -> Iterator[list[str]]:
    engine = app.state.services.db.sync_engine
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if f"FROM {table}" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def test_user_risk_events_are_batched_by_a_dataloader(
    app: Starlette, services: Services
) -> None:
    traders = [await create_user(services) for _ in range(3)]
    for trader in traders:
        for severity in ("LOW", "MEDIUM", "HIGH"):
            await create_risk_event(services, user=trader, severity=severity)
    query = "{ users(first: 4) { edges { node { id riskEvents(first: 2) { severity } } } } }"
    token = await login(services, await create_admin(services))
    with count_queries(app, "risk_events") as statements:
        async with asgi_client(app) as client:
            body = await graphql(client, query, token=token)
    assert len(statements) == 1
    nodes = {
        edge["node"]["id"]: edge["node"]["riskEvents"] for edge in body["data"]["users"]["edges"]
    }
    for trader in traders:
        assert nodes[str(trader.id)] == [{"severity": "HIGH"}, {"severity": "MEDIUM"}]


async def test_approve_and_reject_kyc(
    app: Starlette, services: Services, platform: Platform
) -> None:
    """The worker commits the change (it enforces KYC): the row says so once answered."""
    trader = await create_user(services)
    mutation = "mutation($id: ID!) { %s(userId: $id) { user { id kycStatus } errors { code } } }"
    approved = await as_admin(app, services, mutation % "approveKyc", id=str(trader.id))
    assert approved == {
        "approveKyc": {"user": {"id": str(trader.id), "kycStatus": "APPROVED"}, "errors": []}
    }
    assert (await fetch_user(services, trader.id)).kyc_status == "approved"
    rejected = await as_admin(app, services, mutation % "rejectKyc", id=str(trader.id))
    assert rejected["rejectKyc"]["user"]["kycStatus"] == "REJECTED"
    assert (await fetch_user(services, trader.id)).kyc_status == "rejected"


async def test_set_fee_tier_pins_the_tier(
    app: Starlette, services: Services, platform: Platform
) -> None:
    trader = await create_user(services)
    mutation = """
    mutation($id: ID!, $tier: Int!) {
      setFeeTier(userId: $id, tier: $tier) {
        user { feeTier feeTierOverride } errors { code field message }
      }
    }
    """
    done = await as_admin(app, services, mutation, id=str(trader.id), tier=4)
    assert done == {"setFeeTier": {"user": {"feeTier": 4, "feeTierOverride": True}, "errors": []}}
    row = await fetch_user(services, trader.id)
    assert (row.fee_tier, row.fee_tier_override) == (4, True)

    for tier in (0, 6):
        refused = await as_admin(app, services, mutation, id=str(trader.id), tier=tier)
        assert refused == {
            "setFeeTier": {
                "user": None,
                "errors": [
                    {"code": "INVALID_INPUT", "field": "tier", "message": "fee tier must be 1 to 5"}
                ],
            }
        }
    assert (await fetch_user(services, trader.id)).fee_tier == 4


@pytest.mark.parametrize("user_id", ["999999999999", "abc", "-1", "1" + "0" * 30])
async def test_admin_user_mutations_say_not_found(
    app: Starlette, services: Services, user_id: str
) -> None:
    data = await as_admin(
        app,
        services,
        """mutation($id: ID!) {
          a: approveKyc(userId: $id) { user { id } errors { code field } }
          b: setFeeTier(userId: $id, tier: 2) { user { id } errors { code field } }
        }""",
        id=user_id,
    )
    expected = {"user": None, "errors": [{"code": "NOT_FOUND", "field": "userId"}]}
    assert data == {"a": expected, "b": expected}


async def test_the_system_account_is_not_managed(app: Starlette, services: Services) -> None:
    async with services.sessions() as session:
        fees = (await session.execute(select(User).where(User.role == "system"))).scalar_one()
    data = await as_admin(
        app,
        services,
        "mutation($id: ID!) { rejectKyc(userId: $id) { errors { code } } }",
        id=str(fees.id),
    )
    assert data == {"rejectKyc": {"errors": [{"code": "NOT_FOUND"}]}}
    assert (await fetch_user(services, fees.id)).kyc_status == "approved"


async def test_resolve_risk_event(app: Starlette, services: Services) -> None:
    risk = await create_risk_event(services, severity="CRITICAL")
    mutation = """mutation($id: ID!) {
      resolveRiskEvent(id: $id) { riskEvent { id resolved } errors { code field message } }
    }"""
    done = await as_admin(app, services, mutation, id=str(risk.id))
    assert done == {
        "resolveRiskEvent": {"riskEvent": {"id": str(risk.id), "resolved": True}, "errors": []}
    }
    assert (await fetch_event(services, risk.id)).resolved is True
    again = await as_admin(app, services, mutation, id=str(risk.id))
    assert again == done
    missing = await as_admin(app, services, mutation, id="999999999999")
    assert missing == {
        "resolveRiskEvent": {
            "riskEvent": None,
            "errors": [
                {
                    "code": "NOT_FOUND",
                    "field": "id",
                    "message": "no risk event with id 999999999999",
                }
            ],
        }
    }
