"""The fan-out row of ``make bench``: one book's updates to N WebSocket subscribers.

N ``orderBook(symbol: "BTC-USDT", depth: 10)`` subscribers are the graphql-ws client in one
Node process (``bench/fanout/driver.mjs``, installed with ``npm ci`` on first use: Python's
clients would be the bottleneck long before the server). One trader then places a new bid
level ``rate`` times a second for ``seconds`` on a book emptied first, each above the last
(so each is the new best bid, inside every depth view) and far below any ask (none trades);
every bid is one book update the worker publishes on the book's Redis channel. The bids go
to the worker through the command bus (``tests.support.exchange.place``, on a fixed
schedule), not through the API: the API processes are the thing measured, and bids queued
behind their fan-out work would lower the offered update rate as the fan-out gets slower.
The driver hears each publish on that channel itself and times every client's DELTA of the
same ``sequence`` against it, on its own clock. After the run the
trader's bids are cancelled (unmeasured).

Reported: latency publish → client p50 / p99 / max; the fraction of the updates published
that reached the clients, and the fraction of clients that got the last one (the same thing
today; different once slow clients are coalesced); connections and processes; and the API
processes' resident memory before and after the subscribers connected, per subscriber;
the CPU time the server and the driver spent per message delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import httpx
import psutil

from app.kit.bus import CommandBus
from app.kit.redis import Keys, create_redis
from tests.support.exchange import place

DRIVER_DIR = Path(__file__).resolve().parent / "fanout"
SYMBOL = "BTC-USDT"
DEPTH = 10


class DriverMissing(RuntimeError):
    """Node or npm is not installed, or ``npm ci`` failed."""


def ensure_driver() -> None:
    """``npm ci`` in ``bench/fanout`` unless its pinned packages are installed already."""
    if (DRIVER_DIR / "node_modules" / "graphql-ws" / "package.json").exists() and (
        DRIVER_DIR / "node_modules" / "ws" / "package.json"
    ).exists():
        return
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        raise DriverMissing("node and npm are needed for the fan-out driver")
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=DRIVER_DIR,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise DriverMissing(f"npm ci failed: {done.stderr.strip()[-500:]}")


async def clear_book(redis_url: str, keys: Keys) -> None:
    """Cancel every order resting on the book (a halt that cancels, then a resume), so that
    each bid placed next is the best bid, inside every subscriber's depth view (a change
    deeper than the view sends it nothing)."""
    redis = create_redis(redis_url)
    bus = CommandBus(redis, keys)
    try:
        halted = await bus.submit(
            "halt", {"symbol": SYMBOL, "reason": "bench fan-out", "cancel_orders": True}
        )
        if not halted.get("ok"):
            raise RuntimeError(f"could not clear the book: {halted}")
        resumed = await bus.submit("resume", {"symbol": SYMBOL})
        if not resumed.get("ok"):
            raise RuntimeError(f"could not resume the market: {resumed}")
    finally:
        await bus.close()
        await redis.aclose()


async def place_bids(
    redis_url: str, keys: Keys, user_id: int, rate: float, seconds: float
) -> dict[str, Any]:
    """``rate`` bids a second for ``seconds``, each due at its time whatever the answers
    before it, each at a price level of its own above the last (on the emptied book, each is
    the new best bid) and far below any ask (none trades)."""
    redis = create_redis(redis_url)
    bus = CommandBus(redis, keys)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    late: list[float] = []

    async def one(i: int) -> bool:
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - loop.time()))
        late.append(loop.time() - due)
        price = str(Decimal(1000) + Decimal("0.01") * i)
        reply = await place(bus, user_id, SYMBOL, "BUY", "0.01", price)
        return bool(reply.get("ok"))

    try:
        placed = await asyncio.gather(*(one(i) for i in range(round(rate * seconds))))
    finally:
        await bus.close()
        await redis.aclose()
    return {"placed": sum(placed), "refused": len(placed) - sum(placed), "max_late_s": max(late)}


def rss_mb(pids: list[int]) -> float:
    """Resident memory of these processes and their children (uvicorn's workers), MB."""
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            for each in (proc, *proc.children(recursive=True)):
                with contextlib.suppress(psutil.Error):
                    total += each.memory_info().rss
    return total / 2**20


def cpu_s(pids: list[int]) -> float:
    """CPU time (user + system) of these processes and their children, seconds."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            for each in (proc, *proc.children(recursive=True)):
                with contextlib.suppress(psutil.Error):
                    times = each.cpu_times()
                    total += times.user + times.system
    return total


def _raise_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class Driver:
    proc: subprocess.Popen[str]

    @classmethod
    @contextlib.contextmanager
    def run(cls, config: dict[str, Any]) -> Iterator[Driver]:
        proc = subprocess.Popen(
            ["node", "driver.mjs", json.dumps(config)],
            cwd=DRIVER_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=_raise_open_files,
        )
        try:
            yield cls(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)

    def event(self, name: str) -> dict[str, Any]:
        stdout: IO[str] | None = self.proc.stdout
        assert stdout is not None
        for line in stdout:
            if not line.startswith("{"):
                continue
            message: dict[str, Any] = json.loads(line)
            if message["event"] == "failed":
                raise RuntimeError(f"the fan-out driver failed: {message['error']}")
            if message["event"] == name:
                return message
        raise RuntimeError(f"the fan-out driver exited (code {self.proc.wait()}) before {name!r}")

    def tell(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()

    def cpu_s(self) -> float:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(self.proc.pid).cpu_times()
            return float(times.user + times.system)
        return 0.0


def fanout_row(
    *,
    url: str,
    redis_url: str,
    keys: Keys,
    trader_id: int,
    clients: int,
    api_pids: list[int],
    api_processes: int,
    rate: float,
    seconds: float,
    drain_s: float,
    cancel: Callable[[], None],
    label: str = "API",
) -> dict[str, Any]:
    """One fan-out measurement against the server on ``port`` (see the module)."""
    try:
        ensure_driver()
    except DriverMissing as missing:
        return {"available": False, "clients": clients, "label": label, "note": str(missing)}
    try:
        return _measure(
            url, redis_url, keys, trader_id, clients, api_pids, rate, seconds, drain_s, label
        ) | {"api_processes": api_processes}
    except (RuntimeError, OSError, subprocess.SubprocessError) as failed:
        return {"available": False, "clients": clients, "label": label, "note": str(failed)[:300]}
    finally:
        cancel()


def _measure(
    url: str,
    redis_url: str,
    keys: Keys,
    trader_id: int,
    clients: int,
    api_pids: list[int],
    rate: float,
    seconds: float,
    drain_s: float,
    label: str,
) -> dict[str, Any]:
    asyncio.run(clear_book(redis_url, keys))
    before = rss_mb(api_pids)
    config = {
        "url": url.replace("http://", "ws://") + "/graphql",
        "redis_url": redis_url,
        "channel": keys.book_channel(SYMBOL),
        "symbol": SYMBOL,
        "depth": DEPTH,
        "clients": clients,
        "drain_s": drain_s,
    }
    with Driver.run(config) as driver:
        ready = driver.event("ready")
        time.sleep(1.0)  # let the subscriptions' first allocations settle
        after = rss_mb(api_pids)
        driver_cpu, server_cpu = driver.cpu_s(), cpu_s(api_pids)
        driver.tell("start")
        driver.event("started")
        placed = asyncio.run(place_bids(redis_url, keys, trader_id, rate, seconds))
        driver.tell("stop")
        result = driver.event("result")
        driver_cpu, server_cpu = driver.cpu_s() - driver_cpu, cpu_s(api_pids) - server_cpu
        peak = rss_mb(api_pids)
    return {
        "available": True,
        "label": label,
        "clients": clients,
        "connected": ready["connected"],
        "connect_errors": ready["errors"],
        "connect_s": ready["connect_s"],
        "driver_processes": 1,
        "cores": os.cpu_count(),
        "offered_updates_per_s": rate,
        "seconds": seconds,
        "bids_placed": placed["placed"],
        "bids_refused": placed["refused"],
        "latency_ms": result["latency_ms"],
        "published_updates": result["published_updates"],
        "received_fraction": result["received_fraction"],
        "caught_up_fraction": result["caught_up_fraction"],
        "resync_snapshots": result["resync_snapshots"],
        "errors": result["errors"],
        "error_sample": result["error_sample"] or ready["error_sample"],
        "drain_s": result["drain_s"],
        "driver_cpu_s": driver_cpu,
        "server_cpu_s": server_cpu,
        # CPU per message delivered, from the first update to the end of the drain.
        "server_cpu_us_per_message": server_cpu * 1e6 / max(result["received_updates"], 1),
        "driver_cpu_us_per_message": driver_cpu * 1e6 / max(result["received_updates"], 1),
        "api_rss_mb": {"before": before, "subscribed": after, "after_run": peak},
        "rss_kb_per_subscriber": (after - before) * 1024 / max(ready["connected"], 1),
    }


def cancel_all(url: str, token: str) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        client.post(
            "/graphql",
            json={
                "query": f'mutation {{ cancelAllOrders(symbol: "{SYMBOL}") {{ cancelledCount }} }}'
            },
            headers={"Authorization": f"Bearer {token}"},
        )


def register_trader(traders: Callable[..., Any], url: str, admin: str, run: str) -> tuple[str, int]:
    """One funded trader of its own for the bids (the others' orders stay as they are): its
    token and user id."""
    token = str(asyncio.run(traders(url, admin, 1, f"{run}fan"))[0])
    with httpx.Client(base_url=url, timeout=30) as client:
        answer = client.post(
            "/graphql",
            json={"query": "{ me { id } }"},
            headers={"Authorization": f"Bearer {token}"},
        )
    return token, int(answer.json()["data"]["me"]["id"])
