"""The trading mutations read neither the user (KYC is the worker's) nor the market (the
process's market cache) from PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from starlette.applications import Starlette

from app.kit.bus import CommandBus
from app.services import Services
from tests.support.api import asgi_client, graphql
from tests.support.exchange import deposit
from tests.support.factories import create_user, login

ORDER = {"symbol": "eth-usdt", "side": "BUY", "type": "LIMIT", "quantity": "0.1", "price": "100"}


@contextmanager
def statements(app: Starlette) -> Iterator[list[str]]:
    engine = app.state.services.db.sync_engine
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def test_trading_mutations_read_neither_users_nor_markets(
    app: Starlette, services: Services, bus: CommandBus
) -> None:
    user = await create_user(services, kyc_status="approved")
    await deposit(bus, user.id, "USDT", "1000")
    token = await login(services, user)
    async with asgi_client(app) as client:
        with statements(app) as seen:
            placed = await graphql(
                client,
                """mutation($o: PlaceOrderInput!, $many: [PlaceOrderInput!]!) {
                  placeOrder(input: $o) { order { id } errors { code } }
                  placeOrders(inputs: $many) { results { order { id } errors { code } } }
                }""",
                {"o": ORDER, "many": [ORDER, {**ORDER, "symbol": "NOPE-USDT"}]},
                token=token,
            )
            data = placed["data"]
            assert data["placeOrder"]["errors"] == []
            assert [r["errors"] for r in data["placeOrders"]["results"]] == [
                [],
                [{"code": "INVALID_INPUT"}],
            ]
            first = data["placeOrder"]["order"]["id"]
            second = data["placeOrders"]["results"][0]["order"]["id"]
            changed = await graphql(
                client,
                """mutation($a: ID!, $b: ID!) {
                  amendOrder(input: {id: $a, quantity: "0.2"}) {
                    order { quantity } errors { code }
                  }
                  cancelOrder(id: $a) { order { status } errors { code } }
                  cancelOrders(ids: [$b]) { results { order { status } errors { code } } }
                }""",
                {"a": first, "b": second},
                token=token,
            )
    assert changed["data"] == {
        "amendOrder": {"order": {"quantity": "0.2"}, "errors": []},
        "cancelOrder": {"order": {"status": "CANCELLED"}, "errors": []},
        "cancelOrders": {"results": [{"order": {"status": "CANCELLED"}, "errors": []}]},
    }
    assert [s for s in seen if "FROM users" in s or "FROM markets" in s] == []
