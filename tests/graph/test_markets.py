from __future__ import annotations

import httpx


async def graphql(client: httpx.AsyncClient, query: str, **variables: object) -> dict[str, object]:
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_markets_are_served_from_postgres(client: httpx.AsyncClient) -> None:
    body = await graphql(
        client, "{ markets { symbol baseAsset quoteAsset tickSize lotSize minNotional status } }"
    )
    assert body == {
        "data": {
            "markets": [
                {
                    "symbol": "BTC-USDT",
                    "baseAsset": "BTC",
                    "quoteAsset": "USDT",
                    "tickSize": "0.01",
                    "lotSize": "0.00001",
                    "minNotional": "5",
                    "status": "TRADING",
                },
                {
                    "symbol": "ETH-USDT",
                    "baseAsset": "ETH",
                    "quoteAsset": "USDT",
                    "tickSize": "0.01",
                    "lotSize": "0.0001",
                    "minNotional": "5",
                    "status": "TRADING",
                },
            ]
        }
    }


async def test_market_by_symbol_is_case_insensitive_and_not_found_when_unknown(
    client: httpx.AsyncClient,
) -> None:
    query = "query($s: String!) { market(symbol: $s) { symbol } }"
    assert await graphql(client, query, s="eth-usdt") == {
        "data": {"market": {"symbol": "ETH-USDT"}}
    }
    assert await graphql(client, query, s="DOGE-USDT") == {
        "data": {"market": None},
        "errors": [
            {
                "message": "no market 'DOGE-USDT'",
                "locations": [{"line": 1, "column": 22}],
                "path": ["market"],
                "extensions": {"code": "NOT_FOUND", "argument": "symbol"},
            }
        ],
    }


async def test_graphiql_is_served_to_a_browser_in_development(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()
