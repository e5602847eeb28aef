"""Matching-engine benchmark (not a test): ``python -m bench.engine [--commands N] [--quick]``.

1. A realistic mixed flow on 2 symbols from 200 accounts: limit orders that rest and that
   cross, cancels, amends and market orders, with the full accounting. Reports commands/s
   (an uninstrumented run), per-command latency p50/p99/p99.9 (a second run timing every
   call with ``perf_counter_ns``) and resident bytes per resting order (tracemalloc).
2. One place/cancel stream of limit orders fed to this engine and to two peers installed
   from PyPI as benchmark-only dependencies: ``pyorderbook`` (pure Python, price-time
   matching, no accounts or fees) and ``liquibook`` (C++ engine behind a SWIG binding).
   The stream is built so that no order ever meets its owner's (no self-trade prevention
   differences), so all three do the same matching; the peers are checked to agree.

Every input (commands, peer orders) is built before the clock starts, then frozen out of the
garbage collector, whose threshold is then set as the worker sets it, for every engine.
When the engine is compiled (``engine.COMPILED``), the same measurements of the pure-Python
engine follow in a column of their own, from a child process with TRADEGRAPH_PURE_ENGINE=1
(``--no-pure`` skips it; ``--json`` prints the figures as JSON).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import engine
from engine import (
    SCALE,
    AmendOrder,
    CancelOrder,
    CancelReason,
    Command,
    CommandRejected,
    Deposit,
    Engine,
    Event,
    MarketLimits,
    MarketSpec,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderStatus,
    OrderType,
    OrderUpdated,
    PlaceOrder,
    Side,
    TimeInForce,
)
from engine.native import PURE_VARIABLE

FEE_ACCOUNT = 0
GC_THRESHOLD = (50_000, 50, 100)
"""The cycle collector as the matching worker tunes it (workers/matching/worker.py), for
every engine measured here, the peers included: the default threshold collects the young
generation every 700 allocations, and a command allocates several events."""
ACCOUNTS = 200
TARGET_OPEN_ORDERS = 20_000  # per run; cancels speed up above it, like a real book


@dataclass(frozen=True)
class MarketModel:
    spec: MarketSpec
    mid_ticks: int  # starting mid price in ticks
    max_lots: int  # largest order in lots


MARKETS = (
    MarketModel(
        MarketSpec("BTC-USDT", "BTC", "USDT", SCALE // 100, SCALE // 100_000, 10 * SCALE),
        mid_ticks=5_000_000,  # 50,000.00
        max_lots=20_000,  # 0.2 BTC
    ),
    MarketModel(
        MarketSpec("ETH-USDT", "ETH", "USDT", SCALE // 100, SCALE // 10_000, 5 * SCALE),
        mid_ticks=300_000,  # 3,000.00
        max_lots=20_000,  # 2 ETH
    ),
)


RISK_LIMITS = os.environ.get("TRADEGRAPH_BENCH_RISK", "") not in ("", "0")
"""Every pre-trade risk check on (wide enough that none refuses): what they cost."""


def new_engine() -> Engine:
    limits = MarketLimits(
        max_order_quantity=10**6 * SCALE,
        max_order_notional=10**11 * SCALE,
        price_band_ppm=500_000,
        breaker_move_ppm=900_000,
    )
    engine = Engine(
        [m.spec for m in MARKETS],
        FEE_ACCOUNT,
        market_limits={m.spec.symbol: limits for m in MARKETS} if RISK_LIMITS else None,
        position_limits={"BTC": 10**7 * SCALE, "ETH": 10**8 * SCALE} if RISK_LIMITS else None,
    )
    for user_id in range(1, ACCOUNTS + 1):
        for asset, amount in (("USDT", 100_000_000), ("BTC", 2_000), ("ETH", 30_000)):
            engine.process(Deposit(user_id, asset, amount * SCALE))
    return engine


@dataclass
class Generator:
    """Builds a command stream by running it through an engine of its own, so that
    cancels and amends name orders that are open at that point of the stream."""

    rng: random.Random
    peers_only: bool  # only limit places and cancels, and no order meets its owner's
    engine: Engine = field(default_factory=new_engine)
    open_ids: list[int] = field(default_factory=list)
    slot: dict[int, int] = field(default_factory=dict)  # order id -> index in open_ids
    owner: dict[int, tuple[int, str, Side, int]] = field(default_factory=dict)
    level_users: dict[tuple[str, Side, int], dict[int, int]] = field(default_factory=dict)
    mids: list[int] = field(default_factory=lambda: [m.mid_ticks for m in MARKETS])
    commands: list[Command] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)

    def run(self, count: int) -> list[Command]:
        rng = self.rng
        for step in range(count):
            if step % 50 == 0:
                self.mids = [mid + rng.choice((-1, 0, 1)) for mid in self.mids]
            command, kind = self.next_command()
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            self.commands.append(command)
            self.track(self.engine.process(command))
        return self.commands

    def next_command(self) -> tuple[Command, str]:
        rng = self.rng
        roll = rng.random()
        crowded = len(self.open_ids) > TARGET_OPEN_ORDERS
        if self.open_ids and (roll < 0.28 or (crowded and roll < 0.5)):
            order_id = self.open_ids[rng.randrange(len(self.open_ids))]
            return CancelOrder(self.owner[order_id][0], order_id), "cancel"
        if not self.peers_only and self.open_ids and roll < 0.36:
            order_id = self.open_ids[rng.randrange(len(self.open_ids))]
            user_id, symbol, side, price = self.owner[order_id]
            tick = MARKETS[0].spec.tick_size
            if rng.random() < 0.6:
                quantity = self.engine.open_order(order_id).quantity  # type: ignore[union-attr]
                lot = next(m.spec.lot_size for m in MARKETS if m.spec.symbol == symbol)
                if quantity > lot:
                    return AmendOrder(user_id, order_id, quantity - lot), "amend quantity"
            away = tick * rng.randint(1, 3) * (-1 if side is Side.BUY else 1)
            return AmendOrder(user_id, order_id, None, price + away), "amend price"
        index = rng.randrange(len(MARKETS))
        model = MARKETS[index]
        spec = model.spec
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        lots = max(1, int(rng.paretovariate(1.5) * model.max_lots / 40))
        quantity = min(lots, model.max_lots) * spec.lot_size
        if not self.peers_only and roll < 0.40:
            user_id = rng.randint(1, ACCOUNTS)
            return PlaceOrder(user_id, spec.symbol, side, OrderType.MARKET, quantity), "market"
        sign = 1 if side is Side.BUY else -1
        crossing = roll < 0.55
        if crossing:
            ticks = self.mids[index] + sign * rng.randint(0, 5)
        else:
            ticks = self.mids[index] - sign * rng.randint(1, 40)
        price = ticks * spec.tick_size
        quantity = max(
            quantity, -(-spec.min_notional * SCALE // price) // spec.lot_size * spec.lot_size
        )
        owner = self.user_for(spec.symbol, side, price)
        if owner is None:
            # Every account owns something this order would meet: make it rest just inside
            # the spread instead.
            best = self.engine.depth(spec.symbol, Side.SELL if side is Side.BUY else Side.BUY, 1)
            price = best[0][0] - sign * spec.tick_size
            owner = self.user_for(spec.symbol, side, price) or rng.randint(1, ACCOUNTS)
        tif = TimeInForce.GTC
        if crossing and not self.peers_only and rng.random() < 0.25:
            tif = TimeInForce.IOC
        command = PlaceOrder(owner, spec.symbol, side, OrderType.LIMIT, quantity, price, tif)
        return command, "crossing limit" if crossing else "resting limit"

    def user_for(self, symbol: str, side: Side, price: int) -> int | None:
        """An account that owns none of the orders an order at ``price`` can meet."""
        if not self.peers_only:
            return self.rng.randint(1, ACCOUNTS)
        other = Side.SELL if side is Side.BUY else Side.BUY
        taken: set[int] = set()
        for level_price, _ in self.engine.depth(symbol, other, 64):
            if (level_price > price) if side is Side.BUY else (level_price < price):
                break
            taken.update(self.level_users.get((symbol, other, level_price), ()))
        free = [user_id for user_id in range(1, ACCOUNTS + 1) if user_id not in taken]
        return self.rng.choice(free) if free else None

    def track(self, events: list[Event]) -> None:
        """Keep the open-order list and the owners per level in step with the engine."""
        for event in events:
            if isinstance(event, OrderAccepted) and event.price is not None:
                self.add(event.order_id, event.user_id, event.symbol, event.side, event.price)
            elif isinstance(event, OrderAmended):
                user_id, symbol, side, _ = self.owner[event.order_id]
                self.remove(event.order_id)
                self.add(event.order_id, user_id, symbol, side, event.price)
            elif isinstance(event, OrderCancelled) or (
                isinstance(event, OrderUpdated) and event.status is OrderStatus.FILLED
            ):
                self.remove(event.order_id)
            if self.peers_only and (
                isinstance(event, CommandRejected)
                or (isinstance(event, OrderCancelled) and event.reason is not CancelReason.USER)
            ):
                raise AssertionError(f"the peer stream must match like the peers do: {event}")

    def add(self, order_id: int, user_id: int, symbol: str, side: Side, price: int) -> None:
        self.owner[order_id] = (user_id, symbol, side, price)
        self.slot[order_id] = len(self.open_ids)
        self.open_ids.append(order_id)
        users = self.level_users.setdefault((symbol, side, price), {})
        users[user_id] = users.get(user_id, 0) + 1

    def remove(self, order_id: int) -> None:
        index = self.slot.pop(order_id, None)
        if index is None:
            return
        last = self.open_ids.pop()
        if last != order_id:
            self.open_ids[index] = last
            self.slot[last] = index
        user_id, symbol, side, price = self.owner.pop(order_id)
        users = self.level_users[symbol, side, price]
        users[user_id] -= 1
        if not users[user_id]:
            del users[user_id]
            if not users:
                del self.level_users[symbol, side, price]


# ---------------------------------------------------------------- measurements


def throughput(commands: Sequence[Command]) -> tuple[float, int]:
    """Commands per second on a fresh engine, and events produced."""
    engine = new_engine()
    process = engine.process
    events = 0
    start = time.perf_counter()
    for command in commands:
        events += len(process(command))
    elapsed = time.perf_counter() - start
    return len(commands) / elapsed, events


def latencies(commands: Sequence[Command]) -> list[int]:
    engine = new_engine()
    process = engine.process
    clock = time.perf_counter_ns
    samples: list[int] = []
    append = samples.append
    for command in commands:
        start = clock()
        process(command)
        append(clock() - start)
    samples.sort()
    return samples


def percentile(samples: Sequence[int], fraction: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * fraction))] / 1000


def bytes_per_resting_order(count: int) -> float:
    """tracemalloc growth of an engine per resting order (no order crosses)."""
    engine = new_engine()
    rng = random.Random(11)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n in range(count):
        model = MARKETS[n % 2]
        spec = model.spec
        side = Side.BUY if n % 4 < 2 else Side.SELL
        ticks = model.mid_ticks + (-1 if side is Side.BUY else 1) * rng.randint(1, 2_000)
        engine.process(
            PlaceOrder(
                rng.randint(1, ACCOUNTS),
                spec.symbol,
                side,
                OrderType.LIMIT,
                spec.lot_size * 1_000,
                ticks * spec.tick_size,
            )
        )
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(engine.snapshot().orders) == count
    return (after - before) / count


# ---------------------------------------------------------------- peers


def peer_inputs(commands: Sequence[Command]) -> list[tuple[bool, int, str, bool, int, int]]:
    """The stream as (is_place, order index, symbol, is_buy, price ticks, quantity lots)."""
    lots = {m.spec.symbol: (m.spec.tick_size, m.spec.lot_size) for m in MARKETS}
    rows = []
    placed = 0
    for command in commands:
        if isinstance(command, PlaceOrder):
            tick, lot = lots[command.symbol]
            assert command.price is not None
            rows.append(
                (
                    True,
                    placed,
                    command.symbol,
                    command.side is Side.BUY,
                    command.price // tick,
                    command.quantity // lot,
                )
            )
            placed += 1
        elif isinstance(command, CancelOrder):
            assert command.order_id is not None
            rows.append((False, command.order_id - 1, "", False, 0, 0))
    return rows


def run_pyorderbook(rows: Sequence[tuple[bool, int, str, bool, int, int]]) -> tuple[float, int]:
    import logging

    from pyorderbook import Book, ask, bid

    logging.getLogger("pyorderbook.book").setLevel(logging.WARNING)
    orders = [(bid if r[3] else ask)(r[2], r[4], r[5]) if r[0] else None for r in rows]
    placed = [o for o in orders if o is not None]
    steps = [
        (o, None) if o is not None else (None, placed[r[1]])
        for o, r in zip(orders, rows, strict=False)
    ]
    book = Book()
    match, cancel = book.match, book.cancel
    start = time.perf_counter()
    for place, cancelled in steps:
        if place is not None:
            match(place)
        else:
            cancel(cancelled)
    elapsed = time.perf_counter() - start
    return len(rows) / elapsed, len(book.order_map)


def run_liquibook(rows: Sequence[tuple[bool, int, str, bool, int, int]]) -> tuple[float, int]:
    import liquibook

    books = {m.spec.symbol: liquibook.DepthOrderBook() for m in MARKETS}
    for symbol, book in books.items():
        book.set_symbol(symbol)
    orders = [liquibook.SimpleOrder(r[3], r[4], r[5]) for r in rows if r[0]]
    book_of = [books[r[2]] for r in rows if r[0]]
    steps: list[tuple[Callable[[object], object], object]] = [
        (book_of[r[1]].add if r[0] else book_of[r[1]].cancel, orders[r[1]]) for r in rows
    ]
    start = time.perf_counter()
    for call, order in steps:
        call(order)
    elapsed = time.perf_counter() - start
    open_orders = sum(len(book.bids()) + len(book.asks()) for book in books.values())
    return len(rows) / elapsed, open_orders


# ---------------------------------------------------------------- report


def measure_engine(
    commands: Sequence[Command], stream: Sequence[Command], resting: int, rounds: int
) -> dict[str, float]:
    """This process's engine on both streams: throughput (best of ``rounds`` runs), latency,
    bytes per resting order."""
    rate, events = max(throughput(commands) for _ in range(rounds))
    samples = latencies(commands)
    p50, p99, p999 = (percentile(samples, f) for f in (0.50, 0.99, 0.999))
    stream_rate, _ = throughput(stream)
    return {
        "commands_per_second": rate,
        "events_per_command": events / len(commands),
        "p50_us": p50,
        "p99_us": p99,
        "p999_us": p999,
        "bytes_per_resting_order": bytes_per_resting_order(resting),
        "stream_commands_per_second": stream_rate,
    }


def pure_engine_figures(argv: list[str]) -> dict[str, float] | None:
    """The same measurements in a child process running the pure-Python engine (one process
    holds one engine), on the same streams (the generator is deterministic)."""
    env = {**os.environ, PURE_VARIABLE: "1"}
    child = subprocess.run(
        [sys.executable, "-m", "bench.engine", *argv, "--engine-only"],
        env=env,
        stdout=subprocess.PIPE,
        check=True,
    )
    figures: dict[str, float] = json.loads(child.stdout)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="50,000 commands, 20,000 orders")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--resting", type=int, default=200_000, help="orders for bytes/order")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs of each throughput figure (best of)"
    )
    parser.add_argument("--no-pure", action="store_true", help="skip the pure-engine column")
    parser.add_argument("--engine-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    count, resting = (50_000, 20_000) if args.quick else (args.commands, args.resting)
    shared = ["--commands", str(count), "--resting", str(resting), "--seed", str(args.seed)]
    shared += ["--rounds", str(args.rounds)]

    print(f"Building {count:,} commands (seed {args.seed}) …", file=sys.stderr, flush=True)
    mixed = Generator(random.Random(args.seed), peers_only=False)
    commands = mixed.run(count)
    peers = Generator(random.Random(args.seed + 1), peers_only=True)
    stream = peers.run(count)
    rows = peer_inputs(stream)
    still_open = len(peers.engine.snapshot().orders)
    # As the worker does once its books are restored: what exists now (the inputs) is kept
    # out of every collection.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    if args.engine_only:
        print(json.dumps(measure_engine(commands, stream, resting, args.rounds)))
        return

    print(f"Measuring ({engine.BUILD}) …", file=sys.stderr, flush=True)
    ours = measure_engine(commands, stream, resting, args.rounds)
    # The shared stream in rounds, each engine once a round, best of each: the machine's load
    # changes by the second, and the ratios should not depend on when each peer ran.
    pyorderbook_rate, pyorderbook_open = run_pyorderbook(rows)
    liquibook_rate, liquibook_open = run_liquibook(rows)
    for _ in range(args.rounds - 1):
        ours["stream_commands_per_second"] = max(
            ours["stream_commands_per_second"], throughput(stream)[0]
        )
        pyorderbook_rate = max(pyorderbook_rate, run_pyorderbook(rows)[0])
        liquibook_rate = max(liquibook_rate, run_liquibook(rows)[0])
    # All three matched alike: the same orders are left in the books.
    assert pyorderbook_open == liquibook_open == still_open, (
        pyorderbook_open,
        liquibook_open,
        still_open,
    )
    pure = None
    if engine.COMPILED and not args.no_pure:
        print("Measuring the pure-Python engine …", file=sys.stderr, flush=True)
        pure = pure_engine_figures(shared)

    places = sum(1 for r in rows if r[0])
    result = {
        "engine": "compiled" if engine.COMPILED else "pure",
        "build": engine.BUILD,
        "commands": count,
        "mix": {kind: n / count for kind, n in sorted(mixed.kinds.items())},
        "mixed": ours,
        "pure": pure,
        "stream": {
            "rounds": args.rounds,
            "commands": len(rows),
            "limit_places": places,
            "pyorderbook_commands_per_second": pyorderbook_rate,
            "liquibook_commands_per_second": liquibook_rate,
            "ratio_pyorderbook": ours["stream_commands_per_second"] / pyorderbook_rate,
            "ratio_liquibook": ours["stream_commands_per_second"] / liquibook_rate,
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    report(result)


def report(result: dict[str, Any]) -> None:
    ours, pure, stream = result["mixed"], result["pure"], result["stream"]
    count = result["commands"]
    mix = ", ".join(f"{kind} {share:.1%}" for kind, share in result["mix"].items())
    columns = [(result["engine"], ours)] + ([("pure", pure)] if pure else [])
    print()
    print(f"TradeGraph engine benchmark — Python {sys.version.split()[0]}, one thread")
    print(f"engine: {result['build']}")
    print(f"mixed flow: {count:,} commands, {ACCOUNTS} accounts, 2 symbols; {mix}")
    print()
    print(f"{'engine, mixed flow':<44}" + "".join(f"{name:>26}" for name, _ in columns))

    def line(label: str, cell: Callable[[dict[str, float]], str]) -> None:
        print(f"{label:<44}" + "".join(f"{cell(figures):>26}" for _, figures in columns))

    line("  throughput", lambda f: f"{f['commands_per_second']:,.0f} cmd/s")
    line(
        "  latency p50 / p99 / p99.9",
        lambda f: f"{f['p50_us']:.1f} / {f['p99_us']:.1f} / {f['p999_us']:.1f} µs",
    )
    line("  events per command", lambda f: f"{f['events_per_command']:.2f}")
    line("  resident bytes per resting order", lambda f: f"{f['bytes_per_resting_order']:,.0f} B")
    print()
    print(
        f"same place/cancel stream: {stream['commands']:,} commands "
        f"({stream['limit_places']:,} limit places), best of {stream['rounds']} rounds"
    )
    print(f"{'':<44}{'cmd/s':>14}{'engine ÷ peer':>16}")
    for name, figures in columns:
        label = f"  tradegraph engine, {name} (full accounting)"
        print(f"{label:<44}{figures['stream_commands_per_second']:>14,.0f}")
    rate = ours["stream_commands_per_second"]
    for label, peer in (
        ("  pyorderbook 0.4.9 (pure Python)", stream["pyorderbook_commands_per_second"]),
        ("  liquibook 2.0.1 (C++ binding)", stream["liquibook_commands_per_second"]),
    ):
        print(f"{label:<44}{peer:>14,.0f}{rate / peer:>15.2f}×")
    print()
    print(f"targets ({result['engine']} engine):")
    met = ours["commands_per_second"] >= 300_000
    print(f"  ≥ 300,000 cmd/s          {'met' if met else 'MISSED'}")
    print(f"  p99 ≤ 20 µs              {'met' if ours['p99_us'] <= 20 else 'MISSED'}")
    print(f"  ≥ 1.5× pyorderbook       {'met' if stream['ratio_pyorderbook'] >= 1.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
