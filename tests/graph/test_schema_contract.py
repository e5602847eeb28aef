"""frontend-contract/schema.graphql must be what the server serves (run `make schema`)."""

from __future__ import annotations

from pathlib import Path

from graph.export_schema import sdl

CONTRACT = Path(__file__).resolve().parents[2] / "frontend-contract" / "schema.graphql"


def test_printed_schema_is_current() -> None:
    assert CONTRACT.read_text() == sdl(), (
        "frontend-contract/schema.graphql is stale: run `make schema` and commit it"
    )


def test_money_is_a_decimal_scalar_never_a_float() -> None:
    assert "Float" not in sdl()
    assert "scalar Decimal" in sdl()
