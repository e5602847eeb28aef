"""The README's example book client (frontend-contract/examples/book-sync.mjs, the npm
graphql-ws client under Node) keeps a depth view in sync and proves it by the checksum."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from app.kit.bus import CommandBus
from app.services import Services
from tests.support.exchange import clear_books, deposit, place
from tests.support.factories import create_user
from tests.support.live import Api
from tests.support.processes import Platform

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "frontend-contract" / "examples"


@pytest.fixture(scope="module")
def node_modules() -> Path:
    npm = shutil.which("npm")
    assert npm, "Node.js and npm are needed (README: Dependencies)"
    if not (EXAMPLES / "node_modules" / "graphql-ws").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=EXAMPLES, check=True, capture_output=True
        )
    return EXAMPLES / "node_modules"


async def test_the_example_client_follows_the_book(
    platform: Platform, services: Services, bus: CommandBus, node_modules: Path
) -> None:
    await clear_books(bus, ("ETH-USDT",))
    maker = await create_user(services, kyc_status="approved")
    await deposit(bus, maker.id, "USDT", "10000")
    client = await asyncio.create_subprocess_exec(
        "node",
        str(EXAMPLES / "book-sync.mjs"),
        env={
            **os.environ,
            "TRADEGRAPH_URL": platform.url.replace("http://", "ws://") + "/graphql",
            "SYMBOL": "ETH-USDT",
            "DEPTH": "2",
            "UPDATES": "4",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert client.stdout is not None
        first = json.loads(await asyncio.wait_for(client.stdout.readline(), 30))
        assert first["type"] == "SNAPSHOT" and first["checksumOk"] is True
        for price in ("2990", "2995", "2980"):  # the third is outside the depth-2 view
            assert (await place(bus, maker.id, "ETH-USDT", "BUY", "0.1", price))["ok"]
        assert (await place(bus, maker.id, "ETH-USDT", "BUY", "0.1", "2999"))["ok"]
        out, err = await asyncio.wait_for(client.communicate(), 30)
        assert client.returncode == 0, err.decode()
        lines = [first, *(json.loads(line) for line in out.decode().splitlines())]
        assert [line["type"] for line in lines] == ["SNAPSHOT", "DELTA", "DELTA", "DELTA"]
        assert all(line["checksumOk"] for line in lines)
        assert [line["bestBid"] for line in lines] == [None, "2990", "2995", "2999"]
        book = await Api(platform)('{ orderBook(symbol: "ETH-USDT", depth: 2) { sequence } }')
        assert lines[-1]["sequence"] == book["orderBook"]["sequence"]
    finally:
        if client.returncode is None:
            client.kill()
            await client.wait()
        await clear_books(bus, ("ETH-USDT",))
