"""The real `tradegraph api` process, spoken to with the gql client."""

from __future__ import annotations

import httpx
import pytest
from gql import Client, gql
from gql.transport.httpx import HTTPXAsyncTransport

from tests.support.processes import Platform

pytestmark = pytest.mark.e2e


async def test_markets_over_http_with_gql(platform: Platform) -> None:
    transport = HTTPXAsyncTransport(url=f"{platform.url}/graphql")
    async with Client(transport=transport) as session:
        result = await session.execute(gql("{ markets { symbol status } }"))
    assert result == {
        "markets": [
            {"symbol": "BTC-USDT", "status": "TRADING"},
            {"symbol": "ETH-USDT", "status": "TRADING"},
        ]
    }


def test_process_is_ready(platform: Platform) -> None:
    response = httpx.get(f"{platform.url}/readyz")
    assert response.status_code == 200
    assert response.json()["ready"] is True
