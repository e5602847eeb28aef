"""Schema-wide fuzzing: no generated query or mutation gets an internal error.

hypothesis-graphql builds valid operations from the live schema (every query and mutation
root field; subscriptions are left out — they need a WebSocket and are covered by their own
tests), with hostile values for ``Decimal``, ``String`` and ``ID`` mixed with real ones (the
markets' symbols, real order and user ids) so that some operations get past validation.
Each is sent through the real ASGI app, anonymously, as a KYC-approved trader with funds,
or as an admin, with the real worker behind it. Every answer must be HTTP < 500 with no
``INTERNAL_SERVER_ERROR``; afterwards the exchange's invariants hold and the worker still
matches. Rate limits are off in this app; the run is bounded by ``max_examples``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import from_schema, nodes

from app.asgi import create_app
from app.config import Settings
from app.kit.bus import CommandBus
from app.kit.db import plain_url
from app.services import Services
from graph.schema import schema
from tests.support.exchange import check_invariants, deposit, place
from tests.support.factories import create_admin, create_user, login
from tests.support.processes import Platform

MAX_EXAMPLES = 250
SYMBOLS = ["BTC-USDT", "ETH-USDT", "eth-usdt", "DOGE-USDT", "BTC-USDT\x00", " BTC-USDT "]
HOSTILE_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "a\udfffb",
    "\x01\x02\x1b[31m\x7f",
    "\u202e\u200b\ufeff",
    "x" * 257,
    "x" * 5000,
    "'; DROP TABLE users; --",
    "%s%n{0}",
    "😀" * 70,
]
HOSTILE_AMOUNTS = [
    "1e30",
    "1E+6000",
    "1e-6000",
    "NaN",
    "-NaN",
    "sNaN",
    "Infinity",
    "-Infinity",
    "-0",
    "0",
    "-1",
    "1_0",
    "١٢",
    "１",
    "  1 ",
    "1E+2",
    "9" * 60,
    "0." + "0" * 59 + "1",
    "999999999999.99999999",
    "1000000000000",
    "0.00000001",
    "0.000000001",
    "0.01",
    "0.5",
    "1",
    "2000",
    "30000",
]


def _amounts() -> st.SearchStrategy[Any]:
    texts = st.one_of(
        st.sampled_from(HOSTILE_AMOUNTS),
        st.decimals(allow_nan=True, allow_infinity=True).map(str),
        st.integers(min_value=-(10**70), max_value=10**70).map(str),
        st.text(alphabet="0123456789.-+eE_ ١٢３", max_size=70),
    )
    numbers = st.one_of(
        st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float),
        st.integers(min_value=-(2**31), max_value=2**31 - 1).map(nodes.Int),
    )
    return st.one_of(texts.map(nodes.String), numbers)


def _texts(real: list[str]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(real),
        st.sampled_from(HOSTILE_TEXT),
        st.text(max_size=40),
        st.text(st.characters(codec=None, categories=["Cs", "Cc"]), max_size=5),
    ).map(nodes.String)


def _operations(ids: list[str]) -> st.SearchStrategy[str]:
    graphql_schema = schema._schema
    assert graphql_schema.query_type is not None and graphql_schema.mutation_type is not None
    # Every root field but `logout`, which would end the trader's session for the rest.
    fields = [
        *graphql_schema.query_type.fields,
        *(name for name in graphql_schema.mutation_type.fields if name != "logout"),
    ]
    return from_schema(
        graphql_schema,
        fields=fields,
        custom_scalars={
            "Decimal": _amounts(),
            "String": _texts([*SYMBOLS, "GTC", "a@example.com", "reason"]),
            "ID": _texts(ids),
        },
        allow_x00=True,
        codec=None,
    )


async def _send(client: httpx.AsyncClient, query: str, token: str | None) -> None:
    # json's ensure_ascii sends lone surrogates as "\ud800" escapes, as a browser can.
    response = await client.post(
        "/graphql",
        content=json.dumps({"query": query}),
        headers={
            "content-type": "application/json",
            **({"Authorization": f"Bearer {token}"} if token else {}),
        },
    )
    assert response.status_code < 500, (query, response.status_code, response.text)
    body = response.json()
    codes = [error.get("extensions", {}).get("code") for error in body.get("errors", [])]
    assert "INTERNAL_SERVER_ERROR" not in codes, (query, body)
    assert all(codes), (query, body)  # every top-level error is typed


def _fuzz(fuzz_settings: Settings, tokens: dict[str, str | None], ids: list[str]) -> int:
    """Runs in a thread with its own event loop and its own app; returns the examples run."""
    loop = asyncio.new_event_loop()
    stack = AsyncExitStack()
    app = create_app(fuzz_settings)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("127.0.0.9", 40000)),
        base_url="http://testserver",
    )
    loop.run_until_complete(stack.enter_async_context(app.router.lifespan_context(app)))
    loop.run_until_complete(stack.enter_async_context(client))
    ran = 0

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(query=_operations(ids), who=st.sampled_from(sorted(tokens)))
    def run(query: str, who: str) -> None:
        nonlocal ran
        ran += 1
        loop.run_until_complete(_send(client, query, tokens[who]))

    try:
        run()
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()
    return ran


async def test_generated_operations_never_get_an_internal_error(
    platform: Platform, settings: Settings, services: Services, bus: CommandBus
) -> None:
    trader = await create_user(services, kyc_status="approved")
    admin = await create_admin(services)
    await deposit(bus, trader.id, "USDT", "100000")
    await deposit(bus, trader.id, "BTC", "3")
    resting = await place(bus, trader.id, "BTC-USDT", "SELL", "0.5", "90000")
    assert resting["ok"], resting
    tokens = {
        "anonymous": None,
        "trader": await login(services, trader),
        "admin": await login(services, admin),
    }
    # Only ids of our own making (and ones that name nothing): other tests' users and orders
    # share this database.
    ids = [str(trader.id), str(admin.id), str(resting["order_id"]), "0", "-1", "abc", "9" * 19]
    fuzz_settings = settings.model_copy(update={"rate_limit_enabled": False})

    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["ran"] = _fuzz(fuzz_settings, tokens, ids)
        except BaseException as exc:  # re-raised in the test below
            result["error"] = exc

    thread = threading.Thread(target=target, name="fuzz")
    thread.start()
    await asyncio.to_thread(thread.join)
    if "error" in result:
        raise result["error"]
    assert result["ran"] >= MAX_EXAMPLES // 2

    # The worker still matches, and nothing the fuzz did broke conservation. An admin's
    # rejectKyc may have rejected the trader (the worker enforces it): approve them again.
    approved = await bus.submit("set_kyc", {"user_id": trader.id, "status": "approved"})
    assert approved["ok"], approved
    # The admin's risk controls may have suspended the trader or changed limits: back to
    # the migration's defaults for the tests after this one.
    await bus.submit("set_trading_suspension", {"user_id": trader.id, "suspended": False})
    for symbol, quantity in (("BTC-USDT", "1000"), ("ETH-USDT", "10000")):
        reset = {"symbol": symbol, "max_order_quantity": quantity, "max_order_notional": "10000000"}
        assert (await bus.submit("set_market_limits", reset))["ok"]
    for asset, default in (("BTC", "10000"), ("ETH", "100000"), ("USDT", None)):
        await bus.submit(
            "set_position_limit", {"user_id": None, "asset": asset, "max_position": default}
        )
        await bus.submit(
            "set_position_limit", {"user_id": trader.id, "asset": asset, "max_position": None}
        )
    after = await place(bus, trader.id, "ETH-USDT", "BUY", "0.01", "1000")
    for symbol in SYMBOLS[:2]:  # an admin's haltMarket may have halted it; other tests trade
        await bus.submit("resume", {"symbol": symbol})
    assert {row.status for row in await services.markets.list()} == {"TRADING"}
    cancelled = await bus.submit("cancel_all", {"user_id": trader.id, "symbol": None})
    assert cancelled["ok"], cancelled
    # The admin may have halted ETH-USDT (then the order above is refused, not lost).
    assert after["ok"] or after["error"]["code"] == "MARKET_HALTED", after
    assert (await place(bus, trader.id, "ETH-USDT", "BUY", "0.01", "1000"))["ok"]
    await bus.submit("cancel_all", {"user_id": trader.id, "symbol": None})
    connection = await asyncpg.connect(plain_url(settings.database_url or ""))
    try:
        await check_invariants(connection)
    finally:
        await connection.close()
