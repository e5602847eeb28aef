"""The project's performance table: ``make bench`` (``python -m bench.run [--quick] ...``).

Every row is measured in the same run, so the ratios hold on a noisy machine:

1. baseline: a bare Strawberry mutation of the same input and payload shape as
   ``placeOrder`` that does no work (:mod:`bench.bare_app`, one uvicorn process);
2. ``placeOrder`` over HTTP against the real platform: ``tradegraph worker`` and ``tradegraph
   api`` started here, with a database and Redis key prefix of their own (removed after),
   rate limits off, many KYC-approved funded traders on both sides of BTC-USDT and ETH-USDT;
   half the orders rest a few ticks off the mid, half cross it, so the book holds steady;
3. ``placeOrders`` batches of 100, when the schema has that mutation (found by introspection);
4. worker restart with 100,000 resting orders (``python -m bench.restart``, when present);
5. the engine alone (``python -m bench.engine``, its printed figures);
6. CPU time per order and resident memory of each process during the saturation phases.

Both HTTP rows use the same load generator (:mod:`bench.loadgen`, why that one is said
there), the same connection count and the same two measures: answers/s at saturation
(closed loop) and p50/p99/p99.9 at fixed offered rates, latency counted from each request's
scheduled send time (:mod:`bench.latency`). Results go to the terminal and to
``bench/results/<UTC timestamp>/`` (``bench.json``, ``bench.png``, ``table.md``), which git
ignores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform as host
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psutil

from app.config import Environment, Settings
from app.kit import migrate
from app.kit.embedded import EmbeddedServices
from app.kit.redis import Keys
from bench import fanout, report
from bench.latency import summary
from tests.support import services as svc
from tests.support.processes import ROOT, Platform, free_port, process_env

PLACE_ORDER = (
    "mutation Place($input: PlaceOrderInput!) { placeOrder(input: $input) { "
    "order { id status filledQuantity remainingQuantity } "
    "fills { id price quantity fee feeAsset liquidity } errors { code field message } } }"
)
PASSWORD = "bench-pass-1"
CLI = (sys.executable, "-m", "app.cli")


@dataclass(frozen=True)
class Book:
    """One market's order flow: prices in whole steps around a fixed mid."""

    symbol: str
    mid: Decimal
    step: Decimal  # a multiple of the tick size
    lots: tuple[Decimal, ...]  # order quantities to pick from (all above min notional)


BOOKS = (
    Book("BTC-USDT", Decimal(30000), Decimal("0.50"), (Decimal("0.001"), Decimal("0.003"))),
    Book("ETH-USDT", Decimal(2000), Decimal("0.05"), (Decimal("0.01"), Decimal("0.03"))),
)


def order_input(rng: random.Random) -> dict[str, str]:
    """A market maker's or a taker's limit order, half each: the maker rests 1-10 steps off
    the mid on its own side, the taker crosses up to 5 steps over it (and fills against what
    rests there, or rests itself and is taken by the next makers)."""
    book = rng.choice(BOOKS)
    side = rng.choice(("BUY", "SELL"))
    away = rng.randint(1, 10) if rng.random() < 0.5 else -rng.randint(0, 5)
    price = book.mid - away * book.step if side == "BUY" else book.mid + away * book.step
    return {
        "symbol": book.symbol,
        "side": side,
        "type": "LIMIT",
        "quantity": str(rng.choice(book.lots)),
        "price": str(price),
    }


def http_post(port: int, token: str | None, body: bytes) -> str:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\n{auth}Content-Length: {len(body)}\r\n\r\n"
        + body.decode()
    )


def single_requests(port: int, tokens: list[str | None], count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        http_post(
            port,
            tokens[i % len(tokens)],
            json.dumps({"query": PLACE_ORDER, "variables": {"input": order_input(rng)}}).encode(),
        )
        for i in range(count)
    ]


def batch_requests(
    port: int, tokens: list[str | None], document: str, size: int, count: int, seed: int
) -> list[str]:
    rng = random.Random(seed)
    return [
        http_post(
            port,
            tokens[i % len(tokens)],
            json.dumps(
                {
                    "query": document,
                    "variables": {"inputs": [order_input(rng) for _ in range(size)]},
                }
            ).encode(),
        )
        for i in range(count)
    ]


# --- the schema's batch mutation, found by introspection -------------------------------

_TYPE = (
    "kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } }"
)
INTROSPECTION = (
    f"{{ __schema {{ mutationType {{ fields {{ name args {{ name type {{ {_TYPE} }} }} "
    f"type {{ {_TYPE} }} }} }} types {{ name kind fields {{ name args {{ name }} "
    f"type {{ {_TYPE} }} }} }} }} }}"
)


def _named(ref: dict[str, Any]) -> tuple[str, str]:
    while ref.get("ofType"):
        ref = ref["ofType"]
    return ref["kind"], ref["name"]


def _selection(types: dict[str, Any], name: str, depth: int = 0) -> str:
    parts = []
    for each in types[name]["fields"] or ():
        if each["args"]:
            continue
        kind, inner = _named(each["type"])
        if kind in ("SCALAR", "ENUM"):
            parts.append(each["name"])
        elif kind in ("OBJECT", "INTERFACE") and depth < 2:
            parts.append(f"{each['name']} {_selection(types, inner, depth + 1)}")
    return "{ " + " ".join(parts) + " }"


def batch_document(schema: dict[str, Any]) -> str | None:
    """``placeOrders(<list of PlaceOrderInput>: $inputs) { every scalar, two levels }``, or
    None when the schema has no ``placeOrders``."""
    types = {t["name"]: t for t in schema["types"]}
    for each in schema["mutationType"]["fields"]:
        if each["name"] != "placeOrders":
            continue
        args = [
            a["name"]
            for a in each["args"]
            if _named(a["type"]) == ("INPUT_OBJECT", "PlaceOrderInput")
        ]
        if not args:
            return None
        kind, returns = _named(each["type"])
        picked = _selection(types, returns) if kind in ("OBJECT", "INTERFACE") else ""
        return (
            f"mutation Batch($inputs: [PlaceOrderInput!]!) "
            f"{{ placeOrders({args[0]}: $inputs) {picked} }}"
        )
    return None


# --- processes and what they cost -----------------------------------------------------


@dataclass
class Watch:
    """The processes whose CPU time and memory a row reports, found again at each sample
    (PostgreSQL backends come and go; uvicorn's --workers are children of the API)."""

    roots: dict[str, list[int]] = field(default_factory=dict)  # part -> pids (and children)
    database: str | None = None  # PostgreSQL backends of this database
    redis: bool = False

    def processes(self) -> Iterator[tuple[str, psutil.Process]]:
        for part, pids in self.roots.items():
            for pid in pids:
                with contextlib.suppress(psutil.Error):
                    proc = psutil.Process(pid)
                    yield part, proc
                    for child in proc.children(recursive=True):
                        yield part, child
        if self.database or self.redis:
            for proc in psutil.process_iter(["name", "cmdline"]):
                name = proc.info["name"] or ""
                if self.database and name == "postgres":
                    if self.database in " ".join(proc.info["cmdline"] or ()):
                        yield "PostgreSQL backends", proc
                elif self.redis and name.startswith("redis-server"):
                    yield "Redis (shared)", proc

    def sample(self) -> dict[str, dict[int, tuple[float, int]]]:
        out: dict[str, dict[int, tuple[float, int]]] = {}
        for part, proc in self.processes():
            with contextlib.suppress(psutil.Error):
                times, memory = proc.cpu_times(), proc.memory_info()
                out.setdefault(part, {})[proc.pid] = (times.user + times.system, memory.rss)
        return out


def costs(
    before: dict[str, dict[int, tuple[float, int]]],
    after: dict[str, dict[int, tuple[float, int]]],
    loadgen_cpu: float,
    orders: int,
) -> dict[str, dict[str, float | None]]:
    """CPU µs per order and resident MB of each part over a window (a process that appeared
    inside it counts from zero)."""
    out: dict[str, dict[str, float | None]] = {}
    for part, procs in after.items():
        cpu = sum(t - before.get(part, {}).get(pid, (0.0, 0))[0] for pid, (t, _) in procs.items())
        out[part] = {
            "processes": len(procs),
            "cpu_us_per_order": cpu * 1e6 / max(orders, 1),
            "rss_mb": sum(rss for _, rss in procs.values()) / 2**20,
        }
    out["load generator"] = {
        "processes": 1,
        "cpu_us_per_order": loadgen_cpu * 1e6 / max(orders, 1),
        "rss_mb": None,  # measured by nobody: it is the process measuring
    }
    return out


def run_loadgen(config: dict[str, Any], watch: Watch | None = None) -> dict[str, Any]:
    """Run one load-generator process; with ``watch``, sample the other processes' CPU and
    memory when its measured window opens and closes."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(config, file)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen", file.name],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        before = after = None
        result: dict[str, Any] | None = None
        for line in proc.stdout:
            if line.strip() == "measuring":
                before = watch.sample() if watch else None
            elif line.strip() == "measured":
                after = watch.sample() if watch else None
            elif line.startswith("{"):
                result = json.loads(line)
        if proc.wait() != 0 or result is None:
            raise RuntimeError(f"the load generator failed (exit {proc.returncode})")
    finally:
        os.unlink(file.name)
    if before is not None and after is not None:
        orders = result["orders"] or result["answers"]  # a batch answers many orders
        result["resources"] = costs(before, after, result["cpu_s"], orders)
    return result


def saturation(result: dict[str, Any], per_request: int = 1) -> dict[str, Any]:
    latency = summary([x / 1e3 for x in result["latencies_us"]]) if result["latencies_us"] else {}
    return {
        "connections": result["connections"],
        "requests_per_s": result["answers_per_s"],
        "orders_per_s": result["answers_per_s"] * per_request,
        "accepted_orders": result["orders"],
        "fills": result["fills"],
        "refused_entries": result["refused"],
        "errors": result["errors"],
        "error_sample": result["error_sample"],
        "closed_loop_latency_ms": latency,
        "resources": result.get("resources", {}),
    }


def fixed(result: dict[str, Any]) -> dict[str, Any]:
    latency = summary([x / 1e3 for x in result["latencies_us"]]) if result["latencies_us"] else {}
    lag = summary([x / 1e3 for x in result["send_lag_us"]]) if result["send_lag_us"] else {}
    return {
        "offered_per_s": result["offered_per_s"],
        "answered_per_s": result["answers_per_s"],
        "latency_ms": latency,
        "send_lag_ms": lag,
        "unsent": result["unsent"],
        "fills": result["fills"],
        "errors": result["errors"],
        "refused_entries": result["refused"],
        "error_sample": result["error_sample"],
    }


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server on :{port} exited with {proc.returncode}")
        try:
            httpx.post(
                f"http://127.0.0.1:{port}/graphql", json={"query": "{ __typename }"}, timeout=1
            )
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing answered on :{port} in {timeout}s")


# --- the real platform ----------------------------------------------------------------


def gql(client: httpx.Client, query: str, token: str | None = None, **variables: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    body = answer.json()
    if body.get("errors"):
        raise RuntimeError(f"{query[:60]}…: {body['errors']}")
    data = body["data"]
    for value in data.values():
        if isinstance(value, dict) and value.get("errors"):
            raise RuntimeError(f"{query[:60]}…: {value['errors']}")
    return data


async def traders(url: str, admin: str, count: int, run: str) -> list[str | None]:
    """``count`` traders registered over the API, KYC approved and funded by the admin:
    their tokens."""
    semaphore = asyncio.Semaphore(8)

    async def one(client: httpx.AsyncClient, i: int) -> str:
        async def call(query: str, token: str | None, **variables: Any) -> Any:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            payload = {"query": query, "variables": variables}
            body = (await client.post("/graphql", json=payload, headers=headers)).json()
            data = body.get("data") or {}
            if body.get("errors") or any(
                isinstance(v, dict) and v.get("errors") for v in data.values()
            ):
                raise RuntimeError(f"{query[:60]}…: {body}")
            return data

        async with semaphore:
            registered = await call(
                "mutation($input: RegisterInput!) { register(input: $input) "
                "{ token user { id } errors { code field message } } }",
                None,
                input={
                    "email": f"bench{i}-{run}@example.com",
                    "username": f"bench{i}_{run}",
                    "password": PASSWORD,
                },
            )
            token, user = registered["register"]["token"], registered["register"]["user"]["id"]
            await call(
                "mutation($id: ID!) { approveKyc(userId: $id) { errors { code message } } }",
                admin,
                id=user,
            )
            for asset, amount in (("USDT", "1000000000"), ("BTC", "5000"), ("ETH", "50000")):
                await call(
                    "mutation($id: ID!, $asset: String!, $amount: Decimal!) { deposit(userId: $id, "
                    "asset: $asset, amount: $amount) { errors { code message } } }",
                    admin,
                    id=user,
                    asset=asset,
                    amount=amount,
                )
            return str(token)

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return list(await asyncio.gather(*(one(client, i) for i in range(count))))


@contextlib.contextmanager
def real_platform(api_workers: int) -> Iterator[tuple[Platform, str]]:
    """The worker and the API, on a database and Redis prefix of their own; yields the
    platform and an admin's token. Everything is removed after."""
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
        max_open_orders_per_user=1_000_000,
    )
    logs = Path(tempfile.mkdtemp(prefix="tg-bench-"))
    platform = Platform(
        settings=settings,
        log_dir=logs,
        env={
            "TRADEGRAPH_RATE_LIMIT_ENABLED": "false",
            # The fan-out rows open thousands of WebSockets from one address.
            "TRADEGRAPH_WS_MAX_CONNECTIONS_PER_IP": "100000",
            "TRADEGRAPH_WS_MAX_CONNECTIONS": "100000",
        },
    )
    try:
        migrate.upgrade(database_url)
        platform.start_worker()
        api = ["api", "--host", "127.0.0.1", "--port", str(platform.port)]
        api += ["--workers", str(api_workers)]
        platform.start("api", *api)
        platform.wait_http("/healthz")
        email, password = f"admin-{run}@example.com", "bench-admin-pass-1"
        subprocess.run(
            [*CLI, "create-admin", "--email", email, "--password", password],
            env={**process_env(settings), **platform.env},
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        with httpx.Client(base_url=platform.url, timeout=30) as client:
            admin = gql(
                client,
                "mutation($e: String!, $p: String!) { login(email: $e, password: $p) "
                "{ token errors { code message } } }",
                e=email,
                p=password,
            )["login"]["token"]
        yield platform, admin
    finally:
        platform.stop()
        asyncio.run(svc.drop_database(server, name))
        asyncio.run(svc.delete_prefix(redis_url, settings.redis_prefix))
        embedded.close()
        for log in logs.iterdir():
            log.unlink()
        logs.rmdir()


@contextlib.contextmanager
def bare_server(
    workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bare_app", "--port", str(port), "--workers", str(workers)],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    try:
        wait_ready(port, proc)
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)  # thousands of open WebSockets take a while to close
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# --- the rows that come from other programs -------------------------------------------


def engine_row(quick: bool) -> dict[str, Any]:
    """``python -m bench.engine``'s own figures, read from what it prints."""
    # Fewer commands than its own default (1,000,000) keep `make bench` within ~5 minutes;
    # the rates hardly move with the count. --quick: seconds, not tens.
    size = ["--commands", "20000", "--resting", "5000"] if quick else ["--commands", "400000"]
    args = [sys.executable, "-m", "bench.engine", *size]
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    text = done.stdout
    rate = re.search(r"throughput\s+([\d,]+) cmd/s", text)
    latency = re.search(r"p50 / p99 / p99\.9\s+([\d.]+) / ([\d.]+) / ([\d.]+) µs", text)
    peer = re.search(r"pyorderbook[^\n]*?\s([\d,]+)\s+([\d.]+)×", text)
    if done.returncode != 0 or not (rate and latency and peer):
        return {"available": False, "note": f"bench.engine exit {done.returncode}, unparsed"}
    return {
        "available": True,
        "commands_per_s": float(rate[1].replace(",", "")),
        "p50_us": float(latency[1]),
        "p99_us": float(latency[2]),
        "p999_us": float(latency[3]),
        "pyorderbook_commands_per_s": float(peer[1].replace(",", "")),
        "ratio_to_pyorderbook": float(peer[2]),
        "command": " ".join(args[1:]),
    }


def restart_seconds(raw: dict[str, Any]) -> float | None:
    """The restart time in ``bench.restart --json``'s answer (the restart helper's format):
    the first number named like a duration."""
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if any(word in key for word in ("second", "ready", "restart", "_s")):
            return float(value)
    return None


def restart_row(orders: int) -> dict[str, Any]:
    """``python -m bench.restart --orders N --json``, when that module exists."""
    if importlib.util.find_spec("bench.restart") is None:
        return {"available": False, "orders": orders, "note": "no bench/restart.py yet"}
    args = [sys.executable, "-m", "bench.restart", "--orders", str(orders), "--json"]
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {
            "available": False,
            "orders": orders,
            "note": f"bench.restart exit {done.returncode}",
        }
    raw = json.loads(lines[-1])
    seconds = restart_seconds(raw)
    return {"available": seconds is not None, "orders": orders, "seconds": seconds, "raw": raw}


# --- the run --------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    connections: int
    traders: int
    saturate_s: float
    rate_s: float
    warmup_s: float
    rates: tuple[float, ...]
    batch_size: int
    api_workers: int
    restart_orders: int
    fanout_clients: tuple[int, ...]
    fanout_rate: float
    fanout_s: float
    fanout_drain_s: float
    quick: bool
    skip: frozenset[str]
    out: Path


def plan(argv: list[str] | None) -> Plan:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short phases: a smoke test")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections")
    parser.add_argument("--traders", type=int, default=None, help="default 64 (8 with --quick)")
    parser.add_argument("--seconds", type=float, default=None, help="each saturation phase")
    parser.add_argument("--rate-seconds", type=float, default=None, help="each fixed rate")
    parser.add_argument("--rates", default="250,500,1000", help="offered orders/s, comma-separated")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument(
        "--api-workers",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="tradegraph api --workers N (default: one per core, as tradegraph api)",
    )
    parser.add_argument("--restart-orders", type=int, default=None, help="default 100,000")
    parser.add_argument(
        "--fanout",
        default=None,
        help="orderBook subscribers of each fan-out row, comma-separated (default 1000,5000; "
        "100 with --quick)",
    )
    parser.add_argument("--fanout-seconds", type=float, default=None, help="default 10 (3 quick)")
    parser.add_argument("--skip", default="", help="rows to leave out: engine,restart,batch,fanout")
    parser.add_argument("--out", type=Path, default=None, help="default bench/results/<UTC time>")
    args = parser.parse_args(argv)
    quick = args.quick
    return Plan(
        connections=args.connections,
        traders=args.traders or (8 if quick else 64),
        saturate_s=args.seconds or (1.0 if quick else 10.0),
        rate_s=args.rate_seconds or (1.0 if quick else 8.0),
        warmup_s=0.3 if quick else 2.0,
        rates=tuple(float(r) for r in args.rates.split(",") if r),
        batch_size=args.batch_size,
        api_workers=args.api_workers,
        restart_orders=args.restart_orders or (2_000 if quick else 100_000),
        fanout_clients=tuple(
            int(n) for n in (args.fanout or ("100" if quick else "1000,5000")).split(",") if n
        ),
        fanout_rate=20.0,
        fanout_s=args.fanout_seconds or (3.0 if quick else 10.0),
        fanout_drain_s=10.0 if quick else 60.0,
        quick=quick,
        skip=frozenset(s for s in args.skip.split(",") if s),
        out=args.out or ROOT / "bench" / "results" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
    )


STARTED = time.monotonic()


def progress(what: str) -> None:
    print(f"[{time.monotonic() - STARTED:5.1f} s] {what} …", file=sys.stderr, flush=True)


def measure(p: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "host": host.node(),
            "cores": os.cpu_count(),
            "python": host.python_version(),
            "quick": p.quick,
            "connections": p.connections,
            "traders": p.traders,
            "load_generator": "bench.loadgen: 1 process, asyncio on uvloop + httptools",
            "saturate_s": p.saturate_s,
            "rate_s": p.rate_s,
        }
    }
    base = {"host": "127.0.0.1", "connections": p.connections, "warmup": p.warmup_s}
    with bare_server() as (bare_port, bare_proc), real_platform(p.api_workers) as (platform, admin):
        progress(f"registering and funding {p.traders} traders")
        tokens = asyncio.run(traders(platform.url, admin, p.traders, svc.run_id()))
        api_pids = [platform.procs["api"].pid]
        api_processes = p.api_workers  # serving processes (uvicorn's supervisor not counted)
        bare_watch = Watch(roots={"API (bare Strawberry)": [bare_proc.pid]})
        real_watch = Watch(
            roots={"API": api_pids, "worker": [platform.procs["worker"].pid]},
            database=(platform.settings.database_url or "").rsplit("/", 1)[-1],
            redis=True,
        )
        bare_requests = single_requests(bare_port, [None], 4096, seed=1)
        real_requests = single_requests(platform.port, tokens, 4096, seed=1)

        def phase(
            what: str, port: int, requests: list[str], watch: Watch | None, **extra: Any
        ) -> dict[str, Any]:
            progress(what)
            return run_loadgen({**base, "port": port, "requests": requests, **extra}, watch)

        saturate = {"mode": "saturate", "duration": p.saturate_s}
        # The two saturation phases back to back: the headline ratio.
        bare_sat = phase("baseline, saturation", bare_port, bare_requests, bare_watch, **saturate)
        real_sat = phase(
            "placeOrder, saturation", platform.port, real_requests, real_watch, **saturate
        )
        # The same bare app with as many processes as the API has: the fair comparison
        # for the multi-process API (the denominator is the one-process row).
        bare_many: dict[str, Any] | None = None
        if p.api_workers > 1:
            with bare_server(p.api_workers) as (many_port, many_proc):
                many_watch = Watch(roots={"API (bare Strawberry)": [many_proc.pid]})
                bare_many = saturation(
                    phase(
                        f"baseline ×{p.api_workers} processes, saturation",
                        many_port,
                        single_requests(many_port, [None], 4096, seed=1),
                        many_watch,
                        **saturate,
                    )
                )
        bare_rates, real_rates = [], []
        for rate in p.rates:
            at = {"mode": "rate", "rate": rate, "duration": p.rate_s, "drain": p.rate_s}
            bare_rates.append(
                fixed(phase(f"baseline at {rate:g}/s", bare_port, bare_requests, None, **at))
            )
            real_rates.append(
                fixed(phase(f"placeOrder at {rate:g}/s", platform.port, real_requests, None, **at))
            )
        out["baseline"] = {
            "processes": 1,
            "saturation": saturation(bare_sat),
            "rates": bare_rates,
        }
        if bare_many is not None:
            out["baseline_processes"] = {"processes": p.api_workers, "saturation": bare_many}
        out["placeOrder"] = {
            "processes": {"API": api_processes, "worker": 1},
            "saturation": saturation(real_sat),
            "rates": real_rates,
        }
        out["baseline_batch"] = batches(p, bare_port, [None], bare_watch, phase, "baseline")
        out["placeOrders"] = batches(p, platform.port, tokens, real_watch, phase, "placeOrders")
        out["fanout"] = fanouts(p, platform, admin, api_pids, api_processes)
    progress("worker restart")
    out["restart"] = (
        {"available": False, "note": "skipped"}
        if "restart" in p.skip
        else restart_row(p.restart_orders)
    )
    out["engine"] = (
        {"available": False, "note": "skipped"} if "engine" in p.skip else engine_row(p.quick)
    )
    return out


def batches(
    p: Plan,
    port: int,
    tokens: list[str | None],
    watch: Watch,
    phase: Callable[..., dict[str, Any]],
    name: str,
) -> dict[str, Any]:
    """Batches of ``p.batch_size`` orders at saturation, if the server on ``port`` has
    ``placeOrders``: orders/s counts the entries answered with an order."""
    if "batch" in p.skip:
        return {"available": False, "note": "skipped"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        schema = gql(client, INTROSPECTION)["__schema"]
    document = batch_document(schema)
    if document is None:
        return {"available": False, "note": "no placeOrders in the schema"}
    requests = batch_requests(port, tokens, document, p.batch_size, 128, seed=2)
    result = phase(
        f"{name}: placeOrders × {p.batch_size}, saturation",
        port,
        requests,
        watch,
        mode="saturate",
        duration=p.saturate_s,
    )
    row = saturation(result, per_request=p.batch_size)
    row["orders_per_s"] = result["orders"] / p.saturate_s  # entries accepted, not sent
    row["batch_size"] = p.batch_size
    row["available"] = True
    return row


def fanouts(
    p: Plan, platform: Platform, admin: str, api_pids: list[int], api_processes: int
) -> list[dict[str, Any]]:
    """The fan-out rows (:mod:`bench.fanout`), one per subscriber count."""
    if "fanout" in p.skip:
        return []
    trader, trader_id = fanout.register_trader(traders, platform.url, admin, svc.run_id())
    assert platform.settings.redis_url
    redis_url = platform.settings.redis_url
    keys = Keys(platform.settings.redis_prefix)
    common: dict[str, Any] = {
        "redis_url": redis_url,
        "keys": keys,
        "trader_id": trader_id,
        "rate": p.fanout_rate,
        "seconds": p.fanout_s,
        "drain_s": p.fanout_drain_s,
        "cancel": lambda: fanout.cancel_all(platform.url, trader),
    }
    # The baseline: the bare app's orderBook subscription, as many processes as the API,
    # listening to the same channel the same worker publishes on.
    bare_env = {
        "BENCH_BARE_REDIS_URL": redis_url,
        "BENCH_BARE_BOOK_CHANNEL": keys.book_channel(fanout.SYMBOL),
    }
    rows = []
    for clients in p.fanout_clients:
        with bare_server(p.api_workers, bare_env) as (bare_port, bare_proc):
            progress(f"fan-out baseline: bare Strawberry to {clients:,} subscribers")
            rows.append(
                fanout.fanout_row(
                    url=f"http://127.0.0.1:{bare_port}",
                    clients=clients,
                    api_pids=[bare_proc.pid],
                    api_processes=p.api_workers,
                    label="bare Strawberry",
                    **common,
                )
            )
        progress(f"fan-out: orderBook to {clients:,} subscribers")
        rows.append(
            fanout.fanout_row(
                url=platform.url,
                clients=clients,
                api_pids=api_pids,
                api_processes=api_processes,
                **common,
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = plan(argv)
    figures = measure(p)
    table = report.table(figures)
    print()
    print(table)
    report.write(figures, table, p.out)
    print(f"\nwritten: {p.out}/{{bench.json,bench.png,table.md}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
