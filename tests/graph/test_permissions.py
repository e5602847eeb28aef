"""Every admin field and mutation refuses traders (FORBIDDEN) and anonymous callers
(UNAUTHENTICATED): the field is null, the rest of the response stands, nothing changes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select
from starlette.applications import Starlette

from app.accounts.models import Balance, User
from app.accounts.sessions import ADMIN, TRADE, Viewer
from app.markets.models import Market
from app.risk.models import RiskEvent
from app.services import Services
from graph.permissions import IsAdminOrSelf
from tests.support.api import asgi_client, graphql
from tests.support.factories import create_risk_event, create_user, login

# (root field, operation): each also asks for something anyone may see.
ADMIN_OPERATIONS = [
    ("users", "{ users { edges { node { id } } } markets { symbol } }"),
    ("riskEvents", "{ riskEvents { edges { node { id } } } markets { symbol } }"),
    ("approveKyc", "mutation($u: ID!) { approveKyc(userId: $u) { user { id } } __typename }"),
    ("rejectKyc", "mutation($u: ID!) { rejectKyc(userId: $u) { user { id } } __typename }"),
    (
        "setFeeTier",
        "mutation($u: ID!) { setFeeTier(userId: $u, tier: 5) { user { id } } __typename }",
    ),
    (
        "resolveRiskEvent",
        "mutation($r: ID!) { resolveRiskEvent(id: $r) { riskEvent { id } } __typename }",
    ),
    (
        "deposit",
        'mutation($u: ID!) { deposit(userId: $u, asset: "USDT", amount: "1") '
        "{ balance { asset } } __typename }",
    ),
    (
        "withdraw",
        'mutation($u: ID!) { withdraw(userId: $u, asset: "USDT", amount: "1") '
        "{ balance { asset } } __typename }",
    ),
    (
        "haltMarket",
        'mutation { haltMarket(symbol: "ETH-USDT", reason: "x") { market { status } } __typename }',
    ),
    (
        "resumeMarket",
        'mutation { resumeMarket(symbol: "ETH-USDT") { market { status } } __typename }',
    ),
]


async def state(services: Services, user_id: int, event_id: int) -> tuple[Any, ...]:
    async with services.sessions() as session:
        user = await session.get(User, user_id)
        risk = await session.get(RiskEvent, event_id)
        market = await session.get(Market, "ETH-USDT")
        balances = (await session.execute(select(Balance).where(Balance.user_id == user_id))).all()
    assert user is not None and risk is not None and market is not None
    return (
        user.kyc_status,
        user.fee_tier,
        user.fee_tier_override,
        risk.resolved,
        market.status,
        len(balances),
    )


@pytest.mark.parametrize("caller", ["trader", "anonymous"])
@pytest.mark.parametrize(
    ("field", "operation"), ADMIN_OPERATIONS, ids=[f for f, _ in ADMIN_OPERATIONS]
)
async def test_admin_operations_refuse_everyone_else(
    app: Starlette, services: Services, caller: str, field: str, operation: str
) -> None:
    target = await create_user(services)
    risk = await create_risk_event(services, user=target)
    before = await state(services, target.id, risk.id)
    token = await login(services, await create_user(services)) if caller == "trader" else None
    variables = {"u": str(target.id), "r": str(risk.id)}
    used = {name: value for name, value in variables.items() if f"${name}" in operation}

    async with asgi_client(app) as client:
        body = await graphql(client, operation, used, token=token)

    code, message = {
        "trader": ("FORBIDDEN", "only admins may do this"),
        "anonymous": ("UNAUTHENTICATED", "you must be logged in"),
    }[caller]
    assert [(e["path"], e["message"], e["extensions"]) for e in body["errors"]] == [
        ([field], message, {"code": code})
    ]
    assert body["data"][field] is None
    rest = {key: value for key, value in body["data"].items() if key != field}
    assert rest in (
        {"markets": [{"symbol": "BTC-USDT"}, {"symbol": "ETH-USDT"}]},
        {"__typename": "Mutation"},
    )
    assert await state(services, target.id, risk.id) == before


async def test_a_trader_sees_their_own_details_but_not_their_risk_events(
    app: Starlette, services: Services
) -> None:
    trader = await create_user(services)
    await create_risk_event(services, user=trader)
    token = await login(services, trader)
    async with asgi_client(app) as client:
        body = await graphql(
            client, "{ me { id email kycStatus feeTier role riskEvents { id } } }", token=token
        )
    assert body["data"] == {
        "me": {
            "id": str(trader.id),
            "email": trader.email,
            "kycStatus": "PENDING",
            "feeTier": 1,
            "role": "USER",
            "riskEvents": None,
        }
    }
    assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [
        (["me", "riskEvents"], "FORBIDDEN")
    ]


def _info(viewer: Viewer | None) -> Any:
    async def current() -> Viewer | None:
        return viewer

    return SimpleNamespace(context=SimpleNamespace(viewer=current))


def _user(pk: int) -> Any:
    return SimpleNamespace(pk=pk)  # the permission only reads the user's primary key


async def test_private_user_fields_are_for_the_user_themself_or_an_admin() -> None:
    permission = IsAdminOrSelf()
    trader, admin = Viewer(7, frozenset({TRADE})), Viewer(8, frozenset({TRADE, ADMIN}))
    assert await permission.has_permission(_user(7), _info(trader)) is True
    assert await permission.has_permission(_user(9), _info(trader)) is False
    assert await permission.has_permission(_user(9), _info(admin)) is True
    with pytest.raises(Exception, match="you must be logged in") as refused:
        await permission.has_permission(_user(9), _info(None))
    assert getattr(refused.value, "extensions", None) == {"code": "UNAUTHENTICATED"}


TRADING_OPERATIONS = [
    (
        "placeOrder",
        'mutation { placeOrder(input: {symbol: "BTC-USDT", side: BUY, type: LIMIT, '
        'quantity: "0.001", price: "30000"}) { order { id } } __typename }',
    ),
    (
        "placeOrders",
        'mutation { placeOrders(inputs: [{symbol: "BTC-USDT", side: BUY, type: LIMIT, '
        'quantity: "0.001", price: "30000"}]) { results { order { id } } } __typename }',
    ),
    (
        "amendOrder",
        'mutation { amendOrder(input: {id: "1", price: "1"}) { order { id } } __typename }',
    ),
    ("cancelOrder", 'mutation { cancelOrder(id: "1") { order { id } } __typename }'),
    (
        "cancelOrders",
        'mutation { cancelOrders(ids: ["1"]) { results { order { id } } } __typename }',
    ),
    ("cancelAllOrders", "mutation { cancelAllOrders { cancelledCount } __typename }"),
]


@pytest.mark.parametrize(
    ("field", "operation"), TRADING_OPERATIONS, ids=[f for f, _ in TRADING_OPERATIONS]
)
async def test_trading_mutations_refuse_anonymous_callers(
    app: Starlette, field: str, operation: str
) -> None:
    """The resolvers check the viewer themselves (no permission extension): the answer is
    the same UNAUTHENTICATED error on the field, before anything is read or sent."""
    async with asgi_client(app) as client:
        body = await graphql(client, operation, {})
    assert [(e["path"], e["extensions"]) for e in body["errors"]] == [
        ([field], {"code": "UNAUTHENTICATED"})
    ]
    assert body["data"] == {field: None, "__typename": "Mutation"}
