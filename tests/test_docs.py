"""Statements in the README that code can check: they must stay true."""

from __future__ import annotations

import re
from pathlib import Path

from app.balances.service import MAX_KEY
from app.kit.bus import MAX_COMMAND_ID_LENGTH

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_idempotency_key_length_is_the_one_the_api_enforces() -> None:
    stated = re.findall(r"`idempotencyKey` \(1–(\d+) characters", README)
    assert stated == [str(MAX_KEY)]
    schema = (ROOT / "frontend-contract" / "schema.graphql").read_text()
    assert schema.count(f"A key of yours (1-{MAX_KEY} characters)") == 2  # deposit, withdraw
    assert "1-64 characters)" not in schema.replace("1-64 of A-Z", "")
    assert MAX_KEY + len("withdraw:") <= MAX_COMMAND_ID_LENGTH


def test_the_layout_says_what_frontend_contract_holds() -> None:
    (line,) = [line for line in README.splitlines() if line.startswith("frontend-contract/")]
    held = [p.name for p in (ROOT / "frontend-contract").iterdir()]
    assert held and all(name in line for name in held)
    if not any("manifest" in name for name in held):
        assert "manifest" not in line
