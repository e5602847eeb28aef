"""Ordinary market making raises nothing: two makers quote both sides of BTC-USDT and
ETH-USDT, replacing every quote every second for a minute, a taker crossing now and then;
the risk monitor runs with its default settings and reads every entry, and no rule fires
(the engine's self-trade prevention neither: makers never cross themselves)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from app.kit.redis import Keys, create_redis
from app.services import Services
from tests.support.factories import create_admin, create_user, login
from tests.support.live import Api
from tests.support.processes import Platform

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("empty_books_after")]

PLACE = """mutation($input: PlaceOrderInput!) { placeOrder(input: $input) {
  order { id status } errors { code message } } }"""
CANCEL = "mutation($id: ID) { cancelOrder(id: $id) { order { status } errors { code } } }"
DEPOSIT = """mutation($u: ID!, $a: String!, $n: Decimal!) { deposit(userId: $u, asset: $a,
  amount: $n) { errors { code } } }"""
APPROVE = "mutation($u: ID!) { approveKyc(userId: $u) { errors { code } } }"

# Per maker and market: (bid, ask). Maker 2 quotes inside maker 1; nobody crosses itself.
QUOTES = {
    1: {"BTC-USDT": ("29900", "30100"), "ETH-USDT": ("1990", "2010")},
    2: {"BTC-USDT": ("29950", "30050"), "ETH-USDT": ("1995", "2005")},
}
SIZE = {"BTC-USDT": "0.01", "ETH-USDT": "0.1"}
SECONDS = 60


@pytest.fixture
def monitor(platform: Platform) -> Iterator[Platform]:
    platform.start("risk-monitor", "risk-monitor")  # the defaults
    try:
        yield platform
    finally:
        platform.stop("risk-monitor")


def order(symbol: str, side: str, price: str, tif: str = "GTC") -> dict[str, Any]:
    return {
        "input": {
            "symbol": symbol,
            "side": side,
            "type": "LIMIT",
            "quantity": SIZE[symbol],
            "price": price,
            "timeInForce": tif,
        }
    }


async def test_market_making_for_a_minute_raises_no_risk_event(
    monitor: Platform, services: Services, db: asyncpg.Connection
) -> None:
    admin = Api(monitor, await login(services, await create_admin(services)))
    users = [await create_user(services) for _ in range(3)]
    for user in users:
        assert (await admin(APPROVE, u=str(user.id)))["approveKyc"]["errors"] == []
        for asset, amount in (("USDT", "1000000"), ("BTC", "100"), ("ETH", "1000")):
            await admin(DEPOSIT, u=str(user.id), a=asset, n=amount)
    tokens = [await login(services, user) for user in users]
    # One client per quote: a client's transport serves one request at a time.
    clients = {
        (maker, symbol, side): Api(monitor, tokens[maker - 1])
        for maker, markets in QUOTES.items()
        for symbol in markets
        for side in ("BUY", "SELL")
    }
    taker = Api(monitor, tokens[2])
    resting: dict[tuple[int, str, str], str] = {}

    async def requote(maker: int, symbol: str, side: str, price: str) -> None:
        old = resting.pop((maker, symbol, side), None)
        if old is not None:
            await clients[maker, symbol, side](CANCEL, id=old)
        client = clients[maker, symbol, side]
        placed = (await client(PLACE, **order(symbol, side, price)))["placeOrder"]
        assert placed["errors"] == [], placed
        resting[maker, symbol, side] = placed["order"]["id"]

    loop = asyncio.get_running_loop()
    started = loop.time()
    fills = 0
    for second in range(SECONDS):
        await asyncio.gather(
            *(
                requote(maker, symbol, side, bid if side == "BUY" else ask)
                for maker, markets in QUOTES.items()
                for symbol, (bid, ask) in markets.items()
                for side in ("BUY", "SELL")
            )
        )
        if second % 10 == 5:  # a taker crosses maker 2's ask (IOC: nothing rests)
            symbol = "BTC-USDT" if second % 20 == 5 else "ETH-USDT"
            taken = await taker(PLACE, **order(symbol, "BUY", QUOTES[2][symbol][1], "IOC"))
            assert taken["placeOrder"]["errors"] == []
            fills += 1
            resting.pop((2, symbol, "SELL"), None)  # filled: nothing to cancel
        await asyncio.sleep(max(0.0, started + second + 1 - loop.time()))
    for key, order_id in list(resting.items()):
        await clients[key](CANCEL, id=order_id)
    assert fills == 6

    # The monitor has read every entry, then: nothing about these accounts.
    assert services.settings.redis_url
    redis = create_redis(services.settings.redis_url)
    stream = Keys(services.settings.redis_prefix).activity_stream()
    try:
        newest: Any = await redis.xrevrange(stream, count=1)
        last = newest[0][0]
        for _ in range(100):
            groups = await redis.xinfo_groups(stream)
            group = next(g for g in groups if g["name"] == "risk-monitor")
            if group["last-delivered-id"] == last and group["pending"] == 0:
                break
            await asyncio.sleep(0.1)
        assert (group["last-delivered-id"], group["pending"]) == (last, 0)
    finally:
        await redis.aclose()
    found = await db.fetch(
        "SELECT user_id, metadata->>'rule' AS rule, description FROM risk_events "
        "WHERE user_id = ANY($1::bigint[])",
        [u.id for u in users],
    )
    assert [dict(r) for r in found] == []
