"""One test per class of hostile input that used to get an internal error (issue 9).

Each is refused with a typed error before anything reaches PostgreSQL or the worker:
amounts that are not strict money strings, strings PostgreSQL cannot store, cursors and ids
that name nothing, unknown markets, and HTTP bodies that are not a JSON object.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from starlette.applications import Starlette
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.accounts.models import User
from app.orders.models import Order
from app.services import Services
from tests.support.api import asgi_client, bearer, graphql
from tests.support.exchange import deposit, place
from tests.support.factories import create_admin, create_user, login
from tests.support.processes import Platform

PLACE = """mutation($input: PlaceOrderInput!) { placeOrder(input: $input) {
  order { id status } errors { code field message } } }"""
DEPOSIT = """mutation($amount: Decimal!) { deposit(userId: "1", asset: "USDT", amount: $amount) {
  balance { available } errors { code field } } }"""

# Each was accepted once (some as a *different* amount) or answered with an internal error.
NOT_MONEY = [
    "1e30",
    "1E+2",
    "1E+6000",
    "1_0",
    "١٢",
    "１",
    "  1 ",
    "1 ",
    "-0",
    "-1",
    "+1",
    "NaN",
    "Infinity",
    "-Infinity",
    "sNaN",
    "1" * 60,
    "0." + "0" * 59 + "1",
    "1.000000001",
    "1000000000000",
    "01",
    ".5",
    "1.",
    "0x10",
    "",
    "1,5",
]


def top_level(body: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    return [
        (error.get("extensions", {}).get("code"), error.get("extensions", {}).get("argument"))
        for error in body.get("errors", [])
    ]


async def trader(services: Services) -> tuple[User, str]:
    user = await create_user(services, kyc_status="approved")
    return user, await login(services, user)


async def count_orders(services: Services, user_id: int) -> int:
    from sqlalchemy import func, select

    async with services.sessions() as session:
        return int(await session.scalar(select(func.count()).where(Order.user_id == user_id)) or 0)


def limit_order(**fields: Any) -> dict[str, Any]:
    return {
        "input": {
            "symbol": "BTC-USDT",
            "side": "BUY",
            "type": "LIMIT",
            "quantity": "0.01",
            "price": "30000",
            **fields,
        }
    }


async def test_amounts_that_are_not_strict_money_strings_are_invalid_input(
    app: Starlette, services: Services
) -> None:
    user, token = await trader(services)
    async with asgi_client(app) as client:
        for text in NOT_MONEY:
            for field in ("quantity", "price"):
                body = await graphql(client, PLACE, limit_order(**{field: text}), token=token)
                assert body["data"] == {"placeOrder": None}, (field, text, body)
                assert top_level(body) == [("INVALID_INPUT", f"input.{field}")], (field, text)
                assert "4300" not in json.dumps(body)
            # The same as a literal in the document.
            literal = (
                'mutation { placeOrder(input: {symbol: "BTC-USDT", side: BUY, type: LIMIT, '
                f'quantity: {json.dumps(text)}, price: "30000"}}) {{ errors {{ code }} }} }}'
            )
            body = await graphql(client, literal, token=token)
            assert top_level(body) == [("INVALID_INPUT", "input.quantity")], (text, body)
    assert await count_orders(services, user.id) == 0


async def test_json_numbers_are_refused_for_money(app: Starlette, services: Services) -> None:
    """Amounts are strings only: a float cannot be trusted to be the amount meant."""
    user, token = await trader(services)
    async with asgi_client(app) as client:
        for number in (29000.5, 30000, 1e30):
            body = await graphql(client, PLACE, limit_order(price=number), token=token)
            assert top_level(body) == [("INVALID_INPUT", "input.price")], number
            assert "string" in body["errors"][0]["message"]
        literal = (
            'mutation { placeOrder(input: {symbol: "BTC-USDT", side: BUY, type: LIMIT, '
            "quantity: 0.01, price: 29000.5}) { errors { code } } }"
        )
        body = await graphql(client, literal, token=token)
        assert top_level(body) == [("INVALID_INPUT", "input.quantity")]
    assert await count_orders(services, user.id) == 0


async def test_an_admin_deposit_of_a_huge_exponent_is_invalid_input(
    app: Starlette, services: Services
) -> None:
    token = await login(services, await create_admin(services))
    async with asgi_client(app) as client:
        for amount in ("1E+6000", "9" * 5000, "1e-6000"):
            body = await graphql(client, DEPOSIT, {"amount": amount}, token=token)
            assert (body["data"] or {}).get("deposit") is None
            assert top_level(body) == [("INVALID_INPUT", "amount")], amount
            assert "4300" not in body["errors"][0]["message"]


async def test_amend_refuses_malformed_amounts_before_looking_the_order_up(
    app: Starlette, services: Services
) -> None:
    _, token = await trader(services)
    query = """mutation($q: Decimal) { amendOrder(input: {id: "1", quantity: $q}) {
      errors { code } } }"""
    async with asgi_client(app) as client:
        body = await graphql(client, query, {"q": "1e30"}, token=token)
    assert top_level(body) == [("INVALID_INPUT", "input.quantity")]


# (operation, the variable's type, the field using $s, who): every string argument that
# reaches SQL; who is None (anonymous), "trader" or "admin".
NUL = "a\x00b"
SURROGATE = "\ud800"
STRING_CASES: list[tuple[str, str, str, str | None]] = [
    ("query", "String!", "market(symbol: $s) { symbol }", None),
    ("query", "String!", "orderBook(symbol: $s) { symbol }", None),
    ("query", "String!", "trades(symbol: $s) { edges { cursor } }", None),
    ("query", "String!", "ticker(symbol: $s) { symbol }", None),
    ("query", "String", "orders(symbol: $s) { edges { cursor } }", "trader"),
    ("query", "String", "fills(symbol: $s) { edges { cursor } }", "trader"),
    ("query", "String", "orders(after: $s) { edges { cursor } }", "trader"),
    ("query", "ID!", "order(id: $s) { id }", "trader"),
    ("mutation", "String", "cancelAllOrders(symbol: $s) { cancelledCount }", "trader"),
    ("mutation", "String", "cancelOrder(clientOrderId: $s) { order { id } }", "trader"),
    (
        "mutation",
        "String!",
        'placeOrder(input: {symbol: $s, side: BUY, type: MARKET, quantity: "1"}) { order { id } }',
        "trader",
    ),
    (
        "mutation",
        "String",
        'placeOrder(input: {symbol: "BTC-USDT", side: BUY, type: LIMIT, quantity: "0.01", '
        'price: "30000", clientOrderId: $s}) { order { id } }',
        "trader",
    ),
    ("mutation", "String!", 'login(email: $s, password: "12345678") { token }', None),
    ("mutation", "String!", 'login(email: "a@example.com", password: $s) { token }', None),
    (
        "mutation",
        "String!",
        'register(input: {email: $s, username: "zz_edge", password: "12345678"}) { token }',
        None,
    ),
    (
        "mutation",
        "String!",
        'register(input: {email: "zz@example.com", username: $s, password: "12345678"}) { token }',
        None,
    ),
    (
        "mutation",
        "String",
        'deposit(userId: "1", asset: "USDT", amount: "1", idempotencyKey: $s) { errors { code } }',
        "admin",
    ),
    (
        "mutation",
        "String!",
        'deposit(userId: "1", asset: $s, amount: "1") { errors { code } }',
        "admin",
    ),
    (
        "mutation",
        "String!",
        'haltMarket(symbol: "ETH-USDT", reason: $s) { errors { code } }',
        "admin",
    ),
    ("mutation", "String!", "resumeMarket(symbol: $s) { errors { code } }", "admin"),
    ("mutation", "ID!", "approveKyc(userId: $s) { errors { code } }", "admin"),
    ("mutation", "ID!", "resolveRiskEvent(id: $s) { errors { code } }", "admin"),
    ("query", "String", "users(after: $s) { edges { cursor } }", "admin"),
]


@pytest.mark.parametrize("bad", [NUL, SURROGATE, "x" * 300], ids=["nul", "surrogate", "long"])
async def test_strings_postgresql_cannot_store_are_invalid_input(
    app: Starlette, services: Services, bad: str
) -> None:
    tokens = {
        None: None,
        "trader": (await trader(services))[1],
        "admin": await login(services, await create_admin(services)),
    }
    async with asgi_client(app) as client:
        for operation, type_, field, who in STRING_CASES:
            query = f"{operation}($s: {type_}) {{ {field} }}"
            # json's default ensure_ascii sends a lone surrogate as the escape "\ud800".
            response = await client.post(
                "/graphql",
                content=json.dumps({"query": query, "variables": {"s": bad}}),
                headers={"content-type": "application/json", **bearer(tokens[who])},
            )
            assert response.status_code == 200, (query, response.text)
            body = response.json()
            match = re.search(r"(\w+): \$s", field)
            assert match is not None
            argument = ("input." if "input: {" in field else "") + match.group(1)
            assert top_level(body) == [("INVALID_INPUT", argument)], (query, body)
            # The same string as a literal in the document; GraphQL itself has no lone
            # surrogates, so that one is a syntax error.
            literal = f"{operation} {{ {field.replace('$s', json.dumps(bad))} }}"
            body = await graphql(client, literal, token=tokens[who])
            if bad == SURROGATE:
                assert [code for code, _ in top_level(body)] == ["GRAPHQL_PARSE_FAILED"]
            else:
                assert top_level(body) == [("INVALID_INPUT", argument)], (literal, body)
    # The admin's halt with a NUL reason never reached the worker: the market still trades.
    async with asgi_client(app) as client:
        body = await graphql(client, '{ market(symbol: "ETH-USDT") { status } }')
    assert body["data"]["market"]["status"] == "TRADING"


async def test_a_cursor_with_non_ascii_digits_is_invalid_input(
    app: Starlette, services: Services
) -> None:
    _, token = await trader(services)
    cursors = [
        base64.urlsafe_b64encode("v1:²".encode()).decode(),
        base64.urlsafe_b64encode("v1:١٢".encode()).decode(),
        base64.urlsafe_b64encode(b"v1:" + b"9" * 400).decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "not base64 at all!",
    ]
    async with asgi_client(app) as client:
        for cursor in cursors:
            for query in (
                "query($a: String) { orders(after: $a) { edges { cursor } } }",
                "query($a: String) { fills(after: $a) { edges { cursor } } }",
                'query($a: String) { trades(symbol: "BTC-USDT", after: $a) { edges { cursor } } }',
            ):
                body = await graphql(client, query, {"a": cursor}, token=token)
                assert top_level(body) == [("INVALID_INPUT", "after")], (cursor, query, body)


async def test_ids_that_are_not_row_ids_name_nothing(app: Starlette, services: Services) -> None:
    _, token = await trader(services)
    admin = await login(services, await create_admin(services))
    async with asgi_client(app) as client:
        for bad in ("abc", "٣", "1.5", "-1", "0", "9" * 40, " "):
            body = await graphql(
                client, "query($i: ID!) { order(id: $i) { id } }", {"i": bad}, token=token
            )
            assert body == {"data": {"order": None}}, bad
            body = await graphql(
                client,
                "mutation($i: ID!) { cancelOrder(id: $i) { errors { code field } } }",
                {"i": bad},
                token=token,
            )
            assert body["data"]["cancelOrder"]["errors"] == [{"code": "NOT_FOUND", "field": "id"}]
            body = await graphql(
                client,
                "mutation($i: ID!) { approveKyc(userId: $i) { errors { code field } } }",
                {"i": bad},
                token=admin,
            )
            assert body["data"]["approveKyc"]["errors"] == [
                {"code": "NOT_FOUND", "field": "userId"}
            ]


async def test_an_unknown_market_is_not_found_in_market_data(
    app: Starlette, services: Services
) -> None:
    _, token = await trader(services)
    async with asgi_client(app) as client:
        for query in (
            '{ orderBook(symbol: "DOGE-USDT") { symbol } }',
            '{ trades(symbol: "DOGE-USDT") { edges { cursor } } }',
            '{ orders(symbol: "DOGE-USDT") { edges { cursor } } }',
            '{ fills(symbol: "DOGE-USDT") { edges { cursor } } }',
            '{ market(symbol: "DOGE-USDT") { symbol } }',
            '{ ticker(symbol: "DOGE-USDT") { symbol } }',
        ):
            body = await graphql(client, query, token=token)
            assert top_level(body) == [("NOT_FOUND", "symbol")], (query, body)
            assert "DOGE-USDT" in body["errors"][0]["message"]
        body = await graphql(client, '{ orderBook(symbol: "btc-usdt") { symbol } }')
        assert body == {"data": {"orderBook": {"symbol": "BTC-USDT"}}}


@pytest.mark.parametrize(
    "content",
    [
        b'{"query": "{ markets { symbol } }", "x": "\xff\xfe"}',
        b"\xff\xfe{}",
        b"1",
        b'"{ markets { symbol } }"',
        b"null",
        b"[]",
        b'[{"query": "{ markets { symbol } }"}]',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"query": "{ markets { symbol } }", "variables": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
    ],
    ids=[
        "not-utf8",
        "utf16-bom",
        "number",
        "string",
        "null",
        "empty-list",
        "batch",
        "100k-deep",
        "deep-variables",
    ],
)
async def test_bodies_that_are_not_a_json_object_are_a_json_400(
    app: Starlette, content: bytes
) -> None:
    async with asgi_client(app) as client:
        response = await client.post(
            "/graphql", content=content, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "BAD_REQUEST"}


async def test_get_variables_that_are_not_an_object_are_a_json_400(app: Starlette) -> None:
    async with asgi_client(app) as client:
        for variables in ("[1]", "1", "[" * 5000 + "]" * 5000):
            response = await client.get(
                "/graphql", params={"query": "{ markets { symbol } }", "variables": variables}
            )
            assert response.status_code == 400, (variables, response.text)
            assert response.json()["errors"][0]["extensions"] == {"code": "BAD_REQUEST"}


async def test_a_deeply_nested_websocket_message_closes_cleanly_with_4400(
    platform: Platform,
) -> None:
    url = platform.url.replace("http://", "ws://") + "/graphql"
    async with connect(url, subprotocols=["graphql-transport-ws"], max_size=None) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send("[" * 100_000 + "]" * 100_000)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4400


async def test_orders_statuses_lists_a_partly_filled_order_as_open(
    app: Starlette, services: Services, bus: Any
) -> None:
    seller, seller_token = await trader(services)
    buyer, _ = await trader(services)
    await deposit(bus, seller.id, "ETH", "2")
    await deposit(bus, buyer.id, "USDT", "10000")
    resting = await place(bus, seller.id, "ETH-USDT", "SELL", "2", "2000")
    assert resting["ok"], resting
    taken = await place(bus, buyer.id, "ETH-USDT", "BUY", "0.5", "2000")
    assert taken["ok"], taken
    query = """query($s: [OrderStatus!], $one: OrderStatus) {
      orders(symbol: "eth-usdt", statuses: $s, status: $one) { edges { node { id status } } } }"""
    async with asgi_client(app) as client:
        open_orders = await graphql(
            client, query, {"s": ["PENDING", "PARTIAL"]}, token=seller_token
        )
        pending = await graphql(client, query, {"one": "PENDING"}, token=seller_token)
        both = await graphql(
            client, query, {"s": ["PENDING"], "one": "PENDING"}, token=seller_token
        )
        empty = await graphql(client, query, {"s": []}, token=seller_token)
    assert [edge["node"]["status"] for edge in open_orders["data"]["orders"]["edges"]] == [
        "PARTIAL"
    ]
    assert pending["data"]["orders"]["edges"] == []
    assert top_level(both) == [("INVALID_INPUT", "statuses")]
    assert top_level(empty) == [("INVALID_INPUT", "statuses")]


async def test_a_subscription_with_a_nul_symbol_is_invalid_input(platform: Platform) -> None:
    url = platform.url.replace("http://", "ws://") + "/graphql"
    async with connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        query = "subscription($s: String!) { orderBook(symbol: $s) { sequence } }"
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": query, "variables": {"s": "a\x00b"}},
                }
            )
        )
        message = json.loads(await ws.recv())
        # Still open: a further operation is answered.
        await ws.send(
            json.dumps(
                {"id": "2", "type": "subscribe", "payload": {"query": "{ markets { symbol } }"}}
            )
        )
        answer = json.loads(await ws.recv())
        while answer["type"] == "complete":
            answer = json.loads(await ws.recv())
    assert message["type"] in ("error", "next"), message
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert [(e["extensions"]["code"], e["extensions"]["argument"]) for e in errors] == [
        ("INVALID_INPUT", "symbol")
    ]
    assert answer["type"] == "next" and answer["payload"]["data"]["markets"]
