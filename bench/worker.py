"""End-to-end worker benchmark: submit → engine → group commit → reply, over real services.

    python -m bench.worker [--commands N] [--submitters N] [--cross F] [--rate R] [--seconds S]

Uses the same PostgreSQL/Redis the tests would (TEST_DATABASE_URL/TEST_REDIS_URL, the
machine's own, or embedded), in a database and key prefix of its own that are removed after.
The worker is the real `tradegraph worker` process; the load comes from `CommandBus`, the
class the API uses, in this process (on uvloop, as under uvicorn). Prints one table:

- burst: N commands submitted at once (every one in flight), timed from the first
  submission to the last reply — what the bus and the worker can carry;
- closed loop: S concurrent submitters, each waiting for its reply before the next;
- offered rate (default 1,000 commands/s): submit-to-reply p50/p99 when not saturated.

The flow is a market maker's: 45 % cancels (by client order id, so nothing waits for a
previous reply), the rest limit orders on ETH-USDT, a ``--cross`` fraction of them
marketable, the others resting a few ticks off the mid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform as host
import random
import statistics
import tempfile
import time
from itertools import count
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import uvloop
from redis.asyncio import Redis

from app.config import Environment, Settings
from app.kit import migrate
from app.kit.bus import CommandBus
from app.kit.db import plain_url
from app.kit.embedded import EmbeddedServices
from app.kit.redis import Keys, create_redis
from tests.support import services as svc
from tests.support.processes import Platform, submit_while_stopped

MID = 3000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Trader:
    def __init__(self, bus: CommandBus, user_id: int, seed: int, cross: float) -> None:
        self.bus, self.user_id, self.cross = bus, user_id, cross
        self.rng = random.Random(seed)
        self.open: list[str] = []
        self.ids = count()

    def next_command(self) -> tuple[str, dict[str, Any]]:
        rng = self.rng
        if self.open and rng.random() < 0.45:
            return "cancel", {"user_id": self.user_id, "client_order_id": self.open.pop(0)}
        side = rng.choice(("BUY", "SELL"))
        away = -rng.randint(1, 10) if rng.random() < self.cross else rng.randint(1, 20)
        price = MID - away if side == "BUY" else MID + away
        client_order_id = f"u{self.user_id}-{next(self.ids)}"
        self.open.append(client_order_id)
        return "place", {
            "user_id": self.user_id,
            "symbol": "ETH-USDT",
            "side": side,
            "type": "LIMIT",
            "quantity": f"{rng.randint(1, 30) / 10:.1f}",
            "price": str(price),
            "client_order_id": client_order_id,
        }

    async def one(self) -> float:
        kind, payload = self.next_command()
        started = time.perf_counter()
        reply = await self.bus.submit(kind, payload, timeout=60)
        if not reply["ok"] and reply["error"]["code"] != "ORDER_NOT_OPEN":  # filled already
            raise RuntimeError(f"{kind} refused: {reply['error']}")
        return time.perf_counter() - started


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
        for asset, amount in (("USDT", "1000000000"), ("ETH", "50000")):
            reply = await bus.submit("deposit", {"user_id": user, "asset": asset, "amount": amount})
            assert reply["ok"], reply
    return users


async def backlog(platform: Platform, redis: Redis, traders: list[Trader], commands: int) -> float:
    """Commands/s the worker alone carries: queue ``commands`` while it is stopped, start
    it, and time from its first heartbeat to the last reply."""
    replies = await submit_while_stopped(
        platform, redis, (traders[i % len(traders)].one() for i in range(commands))
    )
    started = time.perf_counter()
    startup = await asyncio.to_thread(platform.start_worker)
    await asyncio.gather(*replies)
    return commands / (time.perf_counter() - started - startup)


def cpu_seconds(platform: Platform) -> dict[str, float]:
    """CPU time so far of each part: worker, PostgreSQL backends of the bench database,
    Redis, and this process (the load generator)."""
    database = (platform.settings.database_url or "").rsplit("/", 1)[-1]
    totals = dict.fromkeys(("worker", "PostgreSQL", "Redis", "load generator"), 0.0)
    parts = {platform.procs["worker"].pid: "worker", os.getpid(): "load generator"}
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        part = parts.get(proc.info["pid"])
        if part is None and proc.info["name"] == "postgres" and database in cmdline:
            part = "PostgreSQL"
        elif part is None and (proc.info["name"] or "").startswith("redis-server"):
            part = "Redis"
        if part is not None:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                totals[part] += times.user + times.system
    return totals


async def burst(
    platform: Platform, traders: list[Trader], commands: int
) -> tuple[float, list[float], dict[str, float]]:
    before = cpu_seconds(platform)
    started = time.perf_counter()
    latencies = await asyncio.gather(*(traders[i % len(traders)].one() for i in range(commands)))
    rate = commands / (time.perf_counter() - started)
    after = cpu_seconds(platform)
    return rate, latencies, {part: (after[part] - before[part]) / commands for part in after}


async def closed_loop(traders: list[Trader], commands: int) -> tuple[float, list[float]]:
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


def host_speed() -> float:
    """Milliseconds for a fixed pure-Python loop: how fast this VM is right now, so figures
    from different runs can be compared (its host's load moves them by 1.5x)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        sum(range(10**7))
        best = min(best, time.perf_counter() - started)
    return best * 1e3


def row(measure: str, value: str) -> None:
    print(f"| {measure} | {value} |")


def latency(values: list[float]) -> str:
    return f"{percentile(values, 0.5) * 1e3:.2f} / {percentile(values, 0.99) * 1e3:.2f} ms"


async def bench(args: argparse.Namespace, platform: Platform) -> None:
    settings = platform.settings
    assert settings.redis_url and settings.database_url
    redis = create_redis(settings.redis_url, max_connections=256)
    bus = CommandBus(redis, Keys(settings.redis_prefix))
    speed = host_speed()
    try:
        users = await setup_users(settings.database_url, bus, args.submitters)
        traders = [Trader(bus, user, seed, args.cross) for seed, user in enumerate(users)]
        for trader in traders:  # warm-up
            await trader.one()
        alone = await backlog(platform, redis, traders, args.commands)
        burst_rate, burst_latencies, cpu = await burst(platform, traders, args.commands)
        loop_rate, loop_latencies = await closed_loop(traders, args.commands)
        fixed = await offered_rate(traders, args.rate, args.seconds)
    finally:
        await bus.close()
        await redis.aclose()
    print()
    print(
        f"worker benchmark — {time.strftime('%Y-%m-%d')}, {host.node()}, "
        f"{os.cpu_count()} cores, Python {host.python_version()}; "
        f"{args.cross:.0%} of orders marketable, 45% cancels"
    )
    row("measure", "value")
    print("|---|---|")
    row("host speed: sum(range(10**7)) in pure Python (lower is faster)", f"{speed:.0f} ms")
    row(
        f"worker alone: backlog of {args.commands:,} commands → committed and answered",
        f"{alone:,.0f} commands/s",
    )
    row(f"burst of {args.commands:,} commands, submit→last reply", f"{burst_rate:,.0f} commands/s")
    row("burst, submit→reply p50 / p99 (queueing included)", latency(burst_latencies))
    row(
        "burst, CPU per command",
        ", ".join(f"{part} {seconds * 1e6:.0f} µs" for part, seconds in cpu.items())
        + f" (total {sum(cpu.values()) * 1e6:.0f} µs)",
    )
    row(f"closed loop, {args.submitters} concurrent submitters", f"{loop_rate:,.0f} commands/s")
    row("closed loop, submit→reply p50 / p99", latency(loop_latencies))
    row(f"{args.rate:,.0f} commands/s offered, submit→reply p50 / p99", latency(fixed))
    row(
        "commands at the offered rate",
        f"{len(fixed):,} (mean {statistics.fmean(fixed) * 1e3:.2f} ms)",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--submitters", type=int, default=64)
    parser.add_argument("--cross", type=float, default=0.1)
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
        max_open_orders_per_user=100_000,
    )
    platform = Platform(settings=settings, log_dir=Path(tempfile.mkdtemp(prefix="tg-bench-")))
    try:
        migrate.upgrade(database_url)
        platform.start_worker()
        uvloop.run(bench(args, platform))
    finally:
        platform.stop()
        asyncio.run(svc.drop_database(server, name))
        asyncio.run(svc.delete_prefix(redis_url, settings.redis_prefix))
        embedded.close()


if __name__ == "__main__":
    main()
