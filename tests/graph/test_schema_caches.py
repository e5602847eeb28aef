"""The parsed- and validated-document caches hit for a document seen before."""

from __future__ import annotations

import functools
from typing import Any, cast

import httpx
from strawberry.extensions.validation_cache import _get_validate_cache

from graph.schema import CACHE_SIZE

# A text of this test's own (the trailing comment), so no other test has validated it.
DOCUMENT = '{ markets { symbol } market(symbol: "BTC-USDT") { status } } # caches'


async def test_a_repeated_document_is_validated_once(client: httpx.AsyncClient) -> None:
    cached_validate = cast("functools._lru_cache_wrapper[Any]", _get_validate_cache(CACHE_SIZE))
    answers = []
    for _ in range(3):
        before = cached_validate.cache_info()
        response = await client.post("/graphql", json={"query": DOCUMENT})
        after = cached_validate.cache_info()
        assert response.status_code == 200
        answers.append(response.json())
        answers.append((after.hits - before.hits, after.misses - before.misses))
    assert answers[1] == (0, 1)  # validated the first time
    assert answers[3] == answers[5] == (1, 0)  # then taken from the cache
    assert answers[0] == answers[2] == answers[4]
    assert answers[0]["data"]["market"] == {"status": "TRADING"}
