"""Request and response bodies go through orjson, and read as the standard library reads
them where orjson would differ."""

from __future__ import annotations

import json

import httpx

from app.asgi import GraphQLApp, encode_body

decode = GraphQLApp.decode_json.__get__(object.__new__(GraphQLApp))


def test_bodies_read_as_the_standard_library_reads_them() -> None:
    samples: list[str | bytes] = [
        b'{"query": "{ markets { symbol } }", "variables": {"n": 1, "x": [1.5, "\\u00e9"]}}',
        b'{"id": 123456789012345678901234567890}',  # orjson: a float
        b'{"a": NaN}',  # orjson: refused
        b'{"s": "\\ud800"}',  # orjson: refused (the input guard refuses it, typed)
        '{"s": "é"}',
    ]
    for sample in samples:
        assert repr(decode(sample)) == repr(json.loads(sample))


def test_a_response_quoting_a_lone_surrogate_is_still_json() -> None:
    assert json.loads(encode_body({"message": "bad \ud800"})) == {"message": "bad \ud800"}


async def test_a_variable_with_a_long_integer_is_refused_exactly(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.post(
        "/graphql",
        content=b'{"query": "query($d: Int!) { orderBook(symbol: \\"BTC-USDT\\", depth: $d) '
        b'{ symbol } }", "variables": {"d": 123456789012345678901234567890}}',
        headers={"content-type": "application/json"},
    )
    assert answer.headers["content-type"] == "application/json"
    (error,) = answer.json()["errors"]
    assert error["extensions"]["code"] == "INVALID_INPUT"
    assert "123456789012345678901234567890" in error["message"]  # not 1.2345678901234568e+29
