"""The load generator: ``python -m bench.loadgen CONFIG.json``, a process of its own.

An asyncio client on uvloop: one :class:`asyncio.Protocol` per keep-alive HTTP/1.1
connection, responses parsed by httptools (the parser uvicorn uses), one request in flight
per connection. Every request is built by the harness before the clock starts (headers,
token and body as bytes), so the generator only writes, parses and times.

Why not wrk: wrk has no fixed-rate mode, and a fixed rate with latency from each request's
scheduled send time is what the p99 target is about (wrk2 does that but is not installed);
with one generator for both modes, the saturation and fixed-rate figures come from the same
client code. Why not httpx or aiohttp: their per-request cost in Python (~100-300 µs) would
make the generator, not the server, the bottleneck on two cores. This one costs ~20-40 µs
per request, and its CPU time is measured and reported with the other processes'.

Modes (``config["mode"]``):

- ``saturate``: every connection sends its next request as soon as the previous answer is
  in (closed loop); reports answers per second over ``duration`` after ``warmup``.
- ``rate``: requests are due at ``rate`` per second; each goes out on the first free
  connection at or after its due time, and its latency counts from the due time
  (:mod:`bench.latency`), so stalls are not hidden.

Protocol with the harness, on stdout: ``measuring`` when the measured window opens,
``measured`` when it closes (the harness reads the other processes' CPU times at both), then
one JSON line with the figures.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httptools
import orjson
import uvloop

# Time stamps come from perf_counter: uvloop's loop.time() has millisecond steps (libuv's
# cached clock), too coarse for the latencies of a local server. Sleeps still round to the
# millisecond, which the fixed-rate figures report as the send lag.
clock = time.perf_counter


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.body: list[bytes] = []
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body, self.body = b"".join(self.body), []
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.parser.get_status_code(), body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionError("the server closed the connection")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    async def request(self, payload: bytes) -> tuple[int, bytes]:
        if self.lost is not None:
            raise self.lost
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return await self.waiter


@dataclass
class Tally:
    """What the answers said: HTTP or GraphQL errors, orders accepted, fills, refused entries."""

    answers: int = 0
    errors: int = 0
    orders: int = 0
    fills: int = 0
    refused: int = 0
    error_sample: list[str] = field(default_factory=list)

    def add(self, status: int, body: bytes) -> None:
        self.answers += 1
        problem = None if status == 200 else f"HTTP {status}"
        if problem is None:
            try:
                answer = orjson.loads(body)
            except orjson.JSONDecodeError:
                problem = "not JSON"
            else:
                if answer.get("errors"):
                    problem = json.dumps(answer["errors"])[:300]
                else:
                    self.walk(answer.get("data"))
        if problem is not None:
            self.errors += 1
            if len(self.error_sample) < 5:
                self.error_sample.append(problem + " " + body[:200].decode(errors="replace"))

    def walk(self, node: Any) -> None:
        """Count every payload entry (an object with an ``order`` field), wherever it sits:
        ``placeOrder`` answers one, a batch answers a list of them."""
        if isinstance(node, list):
            for item in node:
                self.walk(item)
        elif isinstance(node, dict):
            if "order" in node:
                if node["order"] is not None:
                    self.orders += 1
                self.fills += len(node.get("fills") or ())
                if node.get("errors"):
                    self.refused += 1
                    if len(self.error_sample) < 5:
                        self.error_sample.append(json.dumps(node["errors"])[:300])
            else:
                for value in node.values():
                    self.walk(value)


async def connect(host: str, port: int, count: int) -> list[Connection]:
    loop = asyncio.get_running_loop()
    out = []
    for _ in range(count):
        _, protocol = await loop.create_connection(Connection, host, port)
        out.append(protocol)
    return out


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def window(opens: float, closes: float) -> float:
    """Tell the harness when the measured window opens and closes; return this process's
    CPU seconds inside it."""
    await asyncio.sleep(max(0.0, opens - clock()))
    say("measuring")
    cpu = time.process_time()
    await asyncio.sleep(max(0.0, closes - clock()))
    cpu = time.process_time() - cpu
    say("measured")
    return cpu


async def saturate(config: dict[str, Any], conns: list[Connection]) -> dict[str, Any]:
    requests = [r.encode() for r in config["requests"]]
    tally, latencies = Tally(), []
    start = clock()
    opens, closes = start + config["warmup"], start + config["warmup"] + config["duration"]

    async def run(conn: Connection, i: int) -> None:
        while (sent := clock()) < closes:
            status, body = await conn.request(requests[i % len(requests)])
            i += len(conns)
            done = clock()
            if opens <= done < closes:  # answers inside the window: the throughput
                latencies.append(done - sent)
                tally.add(status, body)

    measuring = asyncio.create_task(window(opens, closes))
    await asyncio.gather(*(run(c, i) for i, c in enumerate(conns)))
    cpu = await measuring
    return {
        "answers_per_s": tally.answers / config["duration"],
        "latencies_us": [round(x * 1e6) for x in latencies],
        "cpu_s": cpu,
        **tally.__dict__,
    }


async def fixed_rate(config: dict[str, Any], conns: list[Connection]) -> dict[str, Any]:
    requests = [r.encode() for r in config["requests"]]
    rate, warmup, duration = config["rate"], config["warmup"], config["duration"]
    total = round(rate * (warmup + duration))
    first_measured = round(rate * warmup)
    tally, latencies, lags = Tally(), [], []
    start = clock() + 0.05
    closes = start + warmup + duration
    give_up = closes + config["drain"]  # past it, what is still unsent only counts as late
    unsent: list[float] = []
    answered: list[float] = []  # every answer's time, warm-up included: the rate carried
    following = iter(range(total))

    async def run(conn: Connection) -> None:
        for i in following:  # shared: each free connection takes the next due request
            due = start + i / rate
            if (wait := due - clock()) > 0:
                await asyncio.sleep(wait)
            sent = clock()
            if sent > give_up:
                unsent.append(sent - due)
                continue
            status, body = await conn.request(requests[i % len(requests)])
            done = clock()
            answered.append(done)
            if i >= first_measured:
                latencies.append(done - due)
                lags.append(sent - due)
                tally.add(status, body)

    measuring = asyncio.create_task(window(start + warmup, closes))
    await asyncio.gather(*(run(c) for c in conns))
    cpu = await measuring
    finished = clock()
    return {
        "offered_per_s": rate,
        "answers_per_s": len(answered) / max(warmup + duration, finished - start),
        "latencies_us": [round(x * 1e6) for x in latencies + unsent],
        "send_lag_us": [round(x * 1e6) for x in lags],
        "unsent": len(unsent),
        "cpu_s": cpu,
        **tally.__dict__,
    }


async def main(config: dict[str, Any]) -> dict[str, Any]:
    conns = await connect(config["host"], config["port"], config["connections"])
    try:
        run = saturate if config["mode"] == "saturate" else fixed_rate
        result = await run(config, conns)
    finally:
        for conn in conns:
            if conn.transport is not None:
                conn.transport.close()
    result["connections"] = len(conns)
    return result


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as file:
        settings = orjson.loads(file.read())
    say(orjson.dumps(uvloop.run(main(settings))).decode())
