"""`tradegraph api --workers N`: N processes on one socket, each with its own command-bus
reply channel, metrics added up across them, all stopped with their supervisor."""

from __future__ import annotations

import asyncio
import re
import signal

import httpx
import psutil
import pytest
from redis.asyncio import Redis

from app.kit.redis import Keys
from app.services import Services
from tests.support.factories import create_admin, create_user, login
from tests.support.processes import Platform, Supervisor, free_port

pytestmark = pytest.mark.e2e

DEPOSIT = """mutation($id: ID!) { deposit(userId: $id, asset: "USDT", amount: "1") {
  balance { asset } errors { code } } }"""
GRAPHQL_200 = re.compile(
    r'^tradegraph_http_requests_total\{method="POST",path="/graphql",status="200"\} (\S+)$', re.M
)
ROUNDS = 50  # of 8 concurrent requests, each on a connection of its own


def process_requests(metrics: str) -> dict[int, float]:
    """``tradegraph_api_process_graphql_requests`` by pid, from a /metrics text."""
    found = re.findall(
        r'^tradegraph_api_process_graphql_requests\{pid="(\d+)"\} (\S+)$', metrics, re.M
    )
    return {int(pid): float(value) for pid, value in found}


async def scrape(url: str) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        return (await client.get(f"{url}/metrics")).text


async def reply_channels(redis: Redis, keys: Keys) -> set[bytes | str]:
    return set(await redis.pubsub_channels(keys.replies("*")))


async def test_two_workers_serve_from_two_processes_each_with_its_own_reply_channel(
    platform: Platform, services: Services
) -> None:
    admin_token = await login(services, await create_admin(services))
    trader = await create_user(services)
    channels_before = await reply_channels(services.redis, services.keys)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    platform.start_api_on("api-workers", port, "--workers", "2")
    supervisor = psutil.Process(platform.procs["api-workers"].pid)
    try:

        async def deposit() -> None:
            # A connection per request: the kernel hands each to whichever process accepts.
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                answer = await client.post(
                    "/graphql",
                    json={"query": DEPOSIT, "variables": {"id": str(trader.id)}},
                    headers={"authorization": f"Bearer {admin_token}"},
                )
            assert answer.json() == {
                "data": {"deposit": {"balance": {"asset": "USDT"}, "errors": []}}
            }

        served: dict[int, float] = {}
        rounds = 0
        while rounds < ROUNDS:
            rounds += 1
            await asyncio.gather(*(deposit() for _ in range(8)))
            served = process_requests(await scrape(url))
            if len(served) == 2 and all(served.values()):
                break
        children = {
            child.pid
            for child in supervisor.children()
            if "spawn_main" in " ".join(child.cmdline())
        }
        assert set(served) == children and len(children) == 2
        assert all(count > 0 for count in served.values()), served
        # Each process listens for the worker's replies on a channel of its own.
        new_channels = await reply_channels(services.redis, services.keys) - channels_before
        assert len(new_channels) == 2, new_channels
        # The counters of both processes are added up, whichever answers the scrape.
        metrics = await scrape(url)
        total = sum(float(value) for value in GRAPHQL_200.findall(metrics))
        assert total == sum(served.values()) == 8 * rounds
    finally:
        processes = [supervisor, *supervisor.children(recursive=True)]
        supervisor.send_signal(signal.SIGTERM)
        gone, alive = psutil.wait_procs(processes, timeout=20)
        platform.procs.pop("api-workers")
    assert alive == []
    assert all(process.returncode == 0 for process in gone if process.pid == supervisor.pid)


def test_tradegraph_run_starts_its_api_workers(supervisor: Supervisor) -> None:
    """The session's `tradegraph run` was started with ``TRADEGRAPH_API_WORKERS=2``."""
    assert supervisor.proc is not None
    descendants = {p.pid for p in psutil.Process(supervisor.proc.pid).children(recursive=True)}
    # A process appears in /metrics once it has served a GraphQL request; the kernel hands
    # each new connection to whichever accepts, so ask (a connection each) until both have.
    api_processes: set[int] = set()
    for _ in range(100):
        httpx.post(f"{supervisor.url}/graphql", json={"query": "{ markets { symbol } }"}, timeout=5)
        metrics = httpx.get(f"{supervisor.url}/metrics", timeout=5).text
        api_processes = set(process_requests(metrics))
        if len(api_processes) >= 2:
            break
    assert len(api_processes) == 2
    assert api_processes <= descendants
    assert "(2 API processes)" in supervisor.log()
