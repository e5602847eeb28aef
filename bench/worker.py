"""End-to-end worker benchmark: submit → engine → group commit → reply, over real services.

    python -m bench.worker [--commands N] [--submitters N] [--rate R] [--seconds S]

Uses the same PostgreSQL/Redis the tests would (TEST_DATABASE_URL/TEST_REDIS_URL, the
machine's own, or embedded), in a database and key prefix of its own that are removed after.
Prints one table:

- throughput: N concurrent submitters place and cancel as fast as replies come back;
- latency at a fixed offered rate (default 1,000 commands/s): submit-to-reply p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform as host
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from app.config import Environment, Settings
from app.kit import migrate
from app.kit.bus import CommandBus
from app.kit.db import plain_url
from app.kit.embedded import EmbeddedServices
from app.kit.redis import Keys, create_redis
from tests.support import services as svc
from tests.support.processes import Platform


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Trader:
    def __init__(self, bus: CommandBus, user_id: int, seed: int) -> None:
        self.bus, self.user_id = bus, user_id
        self.rng = random.Random(seed)
        self.open: list[int] = []

    def next_command(self) -> tuple[str, dict[str, Any]]:
        if self.open and self.rng.random() < 0.45:
            return "cancel", {"user_id": self.user_id, "order_id": self.open.pop(0)}
        side = self.rng.choice(["BUY", "SELL"])
        price = self.rng.randint(2990, 3010)
        return "place", {
            "user_id": self.user_id,
            "symbol": "ETH-USDT",
            "side": side,
            "type": "LIMIT",
            "quantity": f"{self.rng.randint(1, 30) / 10:.1f}",
            "price": str(price),
        }

    async def one(self) -> float:
        kind, payload = self.next_command()
        started = time.perf_counter()
        reply = await self.bus.submit(kind, payload, timeout=30)
        elapsed = time.perf_counter() - started
        if kind == "place" and reply["ok"] and reply["order_id"]:
            self.open.append(reply["order_id"])
        return elapsed


async def setup_users(database_url: str, bus: CommandBus, count: int) -> list[int]:
    conn = await asyncpg.connect(plain_url(database_url))
    try:
        users = [
            await conn.fetchval(
                "INSERT INTO users (email, password_hash, kyc_status) "
                "VALUES ($1, 'x', 'approved') RETURNING id",
                f"bench{i}@example.com",
            )
            for i in range(count)
        ]
    finally:
        await conn.close()
    for user in users:
        for asset, amount in (("USDT", "1000000000"), ("ETH", "1000000")):
            reply = await bus.submit("deposit", {"user_id": user, "asset": asset, "amount": amount})
            assert reply["ok"], reply
    return users


async def throughput(traders: list[Trader], commands: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    per_trader = commands // len(traders)

    async def run(trader: Trader) -> None:
        for _ in range(per_trader):
            latencies.append(await trader.one())

    started = time.perf_counter()
    await asyncio.gather(*(run(t) for t in traders))
    return len(latencies) / (time.perf_counter() - started), latencies


async def offered_rate(traders: list[Trader], rate: float, seconds: float) -> list[float]:
    latencies: list[float] = []
    tasks: list[asyncio.Task[None]] = []
    interval = 1.0 / rate
    started = time.perf_counter()

    async def fire(trader: Trader) -> None:
        latencies.append(await trader.one())

    n = 0
    while (now := time.perf_counter()) - started < seconds:
        due = started + n * interval
        if now < due:
            await asyncio.sleep(due - now)
        tasks.append(asyncio.create_task(fire(traders[n % len(traders)])))
        n += 1
    await asyncio.gather(*tasks)
    return latencies


async def bench(args: argparse.Namespace, settings: Settings) -> None:
    assert settings.redis_url and settings.database_url
    redis = create_redis(settings.redis_url, max_connections=256)
    bus = CommandBus(redis, Keys(settings.redis_prefix))
    try:
        users = await setup_users(settings.database_url, bus, args.submitters)
        traders = [Trader(bus, user, seed) for seed, user in enumerate(users)]
        for trader in traders:  # warm-up
            await trader.one()
        rate, latencies = await throughput(traders, args.commands)
        fixed = await offered_rate(traders, args.rate, args.seconds)
    finally:
        await bus.close()
        await redis.aclose()
    ms = 1000.0
    print()
    print(
        f"worker benchmark — {time.strftime('%Y-%m-%d')}, {host.node()}, "
        f"{os.cpu_count()} cores, Python {host.python_version()}"
    )
    print("| measure | value |")
    print("|---|---|")
    print(f"| throughput, {args.submitters} concurrent submitters | {rate:,.0f} commands/s |")
    print(
        f"| submit→reply at full load, p50 / p99 | "
        f"{percentile(latencies, 0.5) * ms:.2f} / {percentile(latencies, 0.99) * ms:.2f} ms |"
    )
    print(
        f"| submit→reply at {args.rate:,.0f} commands/s offered, p50 / p99 | "
        f"{percentile(fixed, 0.5) * ms:.2f} / {percentile(fixed, 0.99) * ms:.2f} ms |"
    )
    print(
        f"| commands at the offered rate | {len(fixed):,} "
        f"(mean {statistics.fmean(fixed) * ms:.2f} ms) |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--submitters", type=int, default=64)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    embedded = EmbeddedServices()
    run = svc.run_id()
    server, _ = svc.find_postgres(embedded)
    redis_url, _ = svc.find_redis(embedded)
    name = f"tradegraph_bench_{run}"
    database_url = asyncio.run(svc.create_database(server, name))
    settings = Settings(
        env=Environment.TEST,
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=f"tgbench:{run}:",
        worker_metrics_port=0,
    )
    platform = Platform(settings=settings, log_dir=Path(tempfile.mkdtemp(prefix="tg-bench-")))
    try:
        migrate.upgrade(database_url)
        platform.start_worker()
        asyncio.run(bench(args, settings))
    finally:
        platform.stop()
        asyncio.run(svc.drop_database(server, name))
        asyncio.run(svc.delete_prefix(redis_url, settings.redis_prefix))
        embedded.close()


if __name__ == "__main__":
    main()
