"""The parsed- and validated-document caches hit for a document seen before, and /metrics
counts their hits and misses."""

from __future__ import annotations

import re

import httpx

from graph.extensions import CACHE_SIZE, DOCUMENTS

# A text of this test's own (the trailing comment), so no other test has parsed it.
DOCUMENT = '{ markets { symbol } market(symbol: "BTC-USDT") { status } } # caches'
OTHER = "{ markets { symbol } } # caches, another"


async def cache_counts(client: httpx.AsyncClient) -> dict[tuple[str, str], float]:
    """``{("hits" | "misses", "parse" | "validate"): count}`` from /metrics."""
    text = (await client.get("/metrics")).text
    found = re.findall(
        r'^tradegraph_graphql_cache_(hits|misses)_total\{cache="(\w+)"\} (\S+)$', text, re.M
    )
    return {(kind, cache): float(value) for kind, cache, value in found}


async def test_a_repeated_document_hits_both_caches(client: httpx.AsyncClient) -> None:
    answers = []
    for _ in range(3):
        before = await cache_counts(client)
        response = await client.post("/graphql", json={"query": DOCUMENT})
        after = await cache_counts(client)
        assert response.status_code == 200
        answers.append(response.json())
        answers.append({key: after.get(key, 0) - before.get(key, 0) for key in after})
    miss = {("hits", "parse"): 0, ("misses", "parse"): 1}
    miss.update({("hits", "validate"): 0, ("misses", "validate"): 1})
    hit = {("hits", "parse"): 1, ("misses", "parse"): 0}
    hit.update({("hits", "validate"): 1, ("misses", "validate"): 0})
    assert answers[1] == miss  # parsed and validated the first time
    assert answers[3] == answers[5] == hit  # then taken from the caches
    assert answers[0] == answers[2] == answers[4]
    assert answers[0]["data"]["market"] == {"status": "TRADING"}


async def test_a_document_that_fails_validation_is_refused_again_from_the_cache(
    client: httpx.AsyncClient,
) -> None:
    bad = "{ markets { nope } } # caches, invalid"
    first = await client.post("/graphql", json={"query": bad})
    before = await cache_counts(client)
    again = await client.post("/graphql", json={"query": bad})
    after = await cache_counts(client)
    assert first.json() == again.json()
    assert again.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert after[("hits", "validate")] - before[("hits", "validate")] == 1


async def test_a_syntax_error_is_not_kept(client: httpx.AsyncClient) -> None:
    broken = "{ markets { symbol } # caches, unclosed"
    for _ in range(2):
        before = await cache_counts(client)
        answer = await client.post("/graphql", json={"query": broken})
        after = await cache_counts(client)
        assert answer.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
        assert after[("misses", "parse")] - before[("misses", "parse")] == 1


def test_the_cache_keeps_the_most_recently_used_documents() -> None:
    assert DOCUMENTS.maxsize == CACHE_SIZE
    first = DOCUMENTS.parsed(OTHER)
    for n in range(CACHE_SIZE - 1):
        DOCUMENTS.parsed(f"{{ markets {{ symbol }} }} # filler {n}")
    assert DOCUMENTS.parsed(OTHER) is first  # still there: used again, so newest now
    for n in range(CACHE_SIZE):
        DOCUMENTS.parsed(f"{{ markets {{ symbol }} }} # more filler {n}")
    assert DOCUMENTS.parsed(OTHER) is not first  # dropped, parsed anew
