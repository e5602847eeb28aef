"""Worker restart benchmark: ``python -m bench.restart [--orders 100000] [--runs 3] [--json]``.

Makes a database of its own (removed after) on the PostgreSQL and Redis the tests would use,
migrates it and seeds, in a few set-based statements inside PostgreSQL (no API, no engine):
``--users`` KYC-approved traders, ``--orders`` resting limit orders spread over both markets
and both sides (none crossing, one in five partly filled) and balances whose ``locked`` is
exactly what those orders reserve. Then, ``--runs`` times, starts the real
``tradegraph worker`` and times it from the process start until it is ready: its heartbeat
is up (what ``/readyz`` checks) and a first command, a deposit, is answered. Between runs
the worker is stopped with SIGTERM. Prints a line per run, or with ``--json``
``{"orders", "seconds": [...], "median", "restore_seconds": [...]}``, where
``restore_seconds`` is the worker's own log of the engine rebuild (reading PostgreSQL and
building the books).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg

from app.config import Environment, Settings
from app.kit import migrate
from app.kit.bus import CommandBus
from app.kit.db import plain_url
from app.kit.embedded import EmbeddedServices
from app.kit.redis import Keys, create_redis
from engine.native import PURE_VARIABLE
from tests.support import services as svc
from tests.support.processes import Platform

# (symbol, base, mid price, quantity of each order, lot digits): both on the default grid.
BOOKS = (("BTC-USDT", "BTC", 30_000, "0.01"), ("ETH-USDT", "ETH", 2_000, "0.1"))
LEVELS = 2_000
"""Distinct prices per side: orders queue several deep on each, as in a real book."""

SEED = """
INSERT INTO users (id, email, password_hash, kyc_status)
SELECT 1000 + n, 'restart' || n || '@example.com', 'x', 'approved'
FROM generate_series(1, $1::int) AS n;

-- Order n: market n % 2, BUY when (n / 2) % 2 = 0, at LEVELS ticks of 0.01 below (BUY) or
-- above (SELL) the mid, so the books never cross; every fifth is half filled.
CREATE TEMP TABLE seeded AS
SELECT n AS id,
       1000 + 1 + n % $1::int AS user_id,
       CASE WHEN n % 2 = 0 THEN 'BTC-USDT' ELSE 'ETH-USDT' END AS symbol,
       CASE WHEN n / 2 % 2 = 0 THEN 'BUY' ELSE 'SELL' END AS side,
       CASE WHEN n % 2 = 0 THEN 0.01 ELSE 0.1 END::numeric(20, 8) AS quantity,
       (CASE WHEN n % 2 = 0 THEN 30000 ELSE 2000 END
        + CASE WHEN n / 2 % 2 = 0 THEN -1 ELSE 1 END * (1 + n / 4 % $3::int) * 0.01
       )::numeric(20, 8) AS price,
       CASE WHEN n % 5 = 0 THEN CASE WHEN n % 2 = 0 THEN 0.005 ELSE 0.05 END ELSE 0 END
           ::numeric(20, 8) AS filled_quantity
FROM generate_series(1, $2::int) AS n;

INSERT INTO orders (id, user_id, symbol, side, type, quantity, price, filled_quantity,
                    status, time_in_force, post_only, priority, client_order_id)
SELECT id, user_id, symbol, side, 'LIMIT', quantity, price, filled_quantity,
       CASE WHEN filled_quantity > 0 THEN 'PARTIAL' ELSE 'PENDING' END, 'GTC', false, id,
       CASE WHEN id % 3 = 0 THEN 'c' || id END
FROM seeded;

SELECT setval('orders_id_seq', $2::int);

-- What the open orders reserve: quote for a BUY, base for a SELL.
INSERT INTO balances (user_id, asset, available, locked)
SELECT u.id, a.asset, 1000000, COALESCE(r.locked, 0)
FROM users u
CROSS JOIN (VALUES ('BTC'), ('ETH'), ('USDT')) AS a (asset)
LEFT JOIN (
    SELECT user_id,
           CASE WHEN side = 'BUY' THEN 'USDT' ELSE split_part(symbol, '-', 1) END AS asset,
           sum(CASE WHEN side = 'BUY' THEN price * (quantity - filled_quantity)
                    ELSE quantity - filled_quantity END) AS locked
    FROM seeded GROUP BY 1, 2
) r ON r.user_id = u.id AND r.asset = a.asset
WHERE u.role = 'user';
"""


async def seed(database_url: str, users: int, orders: int) -> float:
    started = time.perf_counter()
    conn = await asyncpg.connect(plain_url(database_url))
    try:
        async with conn.transaction():
            for statement in SEED.split(";\n"):
                if statement.strip():
                    used = sorted(set(re.findall(r"\$(\d)", statement)))
                    arguments = [(users, orders, LEVELS)[int(i) - 1] for i in used]
                    await conn.execute(renumber(statement, used), *arguments)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return time.perf_counter() - started


def renumber(statement: str, used: list[str]) -> str:
    """``$2`` alone in a statement becomes ``$1``: asyncpg wants the parameters it gets."""
    for new, old in enumerate(used, 1):
        statement = statement.replace(f"${old}", f"$__{new}")
    return statement.replace("$__", "$")


async def first_reply(settings: Settings, user_id: int) -> None:
    assert settings.redis_url
    redis = create_redis(settings.redis_url)
    bus = CommandBus(redis, Keys(settings.redis_prefix))
    try:
        reply = await bus.submit(
            "deposit", {"user_id": user_id, "asset": "USDT", "amount": "1"}, timeout=60
        )
        if not reply["ok"]:
            raise RuntimeError(f"the first command was refused: {reply}")
    finally:
        await bus.close()
        await redis.aclose()


RESTORED = re.compile(r"engine restored in ([0-9.]+)s")


def time_restarts(platform: Platform, runs: int, user_id: int) -> tuple[list[float], list[float]]:
    seconds: list[float] = []
    restored: list[float] = []
    for _ in range(runs):
        started = time.monotonic()
        platform.start_worker(timeout=120)
        asyncio.run(first_reply(platform.settings, user_id))
        seconds.append(time.monotonic() - started)
        platform.stop("worker")
        found = RESTORED.findall(platform.log("worker"))
        if found:
            restored.append(float(found[-1]))
    return seconds, restored


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--pure", action="store_true", help="the worker runs the pure engine")
    args = parser.parse_args(argv)

    embedded = EmbeddedServices()
    run = svc.run_id()
    server, _ = svc.find_postgres(embedded)
    redis_url, _ = svc.find_redis(embedded)
    name = f"tradegraph_restart_{run}"
    database_url = asyncio.run(svc.create_database(server, name))
    settings = Settings(
        env=Environment.TEST,
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=f"tgrestart:{run}:",
        worker_metrics_port=0,
        max_open_orders_per_user=1_000_000,
    )
    platform = Platform(settings=settings, log_dir=Path(tempfile.mkdtemp(prefix="tg-restart-")))
    platform.env["TRADEGRAPH_LOG_LEVEL"] = "INFO"
    if args.pure:
        platform.env[PURE_VARIABLE] = "1"
    try:
        migrate.upgrade(database_url)
        seeded = asyncio.run(seed(database_url, args.users, args.orders))
        seconds, restored = time_restarts(platform, args.runs, 1001)
    finally:
        platform.stop()
        asyncio.run(svc.drop_database(server, name))
        asyncio.run(svc.delete_prefix(redis_url, settings.redis_prefix))
        embedded.close()
    result = {
        "orders": args.orders,
        "engine": "pure" if args.pure else "as installed (compiled unless it could not be)",
        "seconds": [round(s, 3) for s in seconds],
        "median": round(statistics.median(seconds), 3),
        "restore_seconds": restored,
        "seed_seconds": round(seeded, 2),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"worker restart with {args.orders:,} resting orders ({args.users:,} traders), "
        f"engine {result['engine']}"
    )
    print(f"  seeded in {seeded:.1f}s")
    for n, (total, engine) in enumerate(zip(seconds, restored, strict=False), 1):
        print(f"  run {n}: ready and answering in {total:.2f}s (engine rebuilt in {engine:.2f}s)")
    print(f"  median {result['median']:.2f}s — target ≤ 3 s: ", end="")
    print("met" if result["median"] <= 3 else "MISSED")


if __name__ == "__main__":
    main()
