"""`make bench` in --quick mode against the real processes, and the arithmetic it rests on."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import strawberry
from strawberry.schema.config import StrawberryConfig

from bench import bare_app
from bench.latency import co_latencies, percentile, schedule, simulate, summary
from bench.loadgen import Tally
from bench.run import INTROSPECTION, PLACE_ORDER, batch_document, order_input, restart_seconds
from tests.support.processes import ROOT

ENTRY = {"symbol": "BTC-USDT", "side": "BUY", "type": "LIMIT", "quantity": "0.001", "price": "1"}


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert [percentile(values, q) for q in (0.5, 0.9, 0.99, 0.999, 1.0)] == [50, 90, 99, 100, 100]
    assert percentile([3.0], 0.5) == 3.0
    assert summary([4.0, 1.0, 2.0, 3.0]) == {
        "p50": 2.0, "p90": 4.0, "p99": 4.0, "p99.9": 4.0, "max": 4.0, "mean": 2.5,
    }  # fmt: skip


def test_a_stall_delays_every_request_due_during_it() -> None:
    """100 requests/s on one connection, 1 ms each, but request 100 takes a whole second.
    Counted from the send, only that one is slow (p99 1 ms). Counted from the schedule, the
    requests due during the stall wait for it, then the backlog drains at 9 ms a request
    (10 ms between requests, 1 ms each): request 100 + k waits 1 s - 9 ms × k."""
    due = schedule(rate=100, count=1000)
    service = [0.001] * 1000
    service[100] = 1.0
    sent, done = simulate(due, service, connections=1)

    naive = [d - s for s, d in zip(sent, done, strict=True)]
    corrected = co_latencies(due, done)
    assert percentile(naive, 0.99) == pytest.approx(0.001)
    assert max(naive) == pytest.approx(1.0)
    for k in (0, 1, 50, 110):
        assert corrected[100 + k] == pytest.approx(1.0 - 0.009 * k)
    assert corrected[99] == pytest.approx(0.001) and corrected[211] == pytest.approx(0.001)
    assert len([x for x in corrected if x > 0.0015]) == 111
    # 1000 requests: p99 is the 11th slowest (k = 10), p90 the 101st (k = 100)
    assert percentile(corrected, 0.99) == pytest.approx(1.0 - 0.009 * 10)
    assert percentile(corrected, 0.9) == pytest.approx(1.0 - 0.009 * 100)
    # with a second connection, the stall holds up only its own request
    _, done = simulate(due, service, connections=2)
    assert percentile(co_latencies(due, done), 0.99) == pytest.approx(0.001)


def test_orders_sit_on_the_grid_around_the_mid() -> None:
    import random

    rng = random.Random(3)
    orders = [order_input(rng) for _ in range(2000)]
    mids = {"BTC-USDT": Decimal(30000), "ETH-USDT": Decimal(2000)}
    crossing = 0
    for order in orders:
        price = Decimal(order["price"])
        assert price % Decimal("0.01") == 0 and abs(price / mids[order["symbol"]] - 1) < Decimal(
            "0.01"
        )
        assert price * Decimal(order["quantity"]) >= 5  # min notional
        above = price > mids[order["symbol"]]
        crossing += above == (order["side"] == "BUY") or price == mids[order["symbol"]]
    assert {o["symbol"] for o in orders} == set(mids) and {o["side"] for o in orders} == {
        "BUY",
        "SELL",
    }
    assert 0.4 < crossing / len(orders) < 0.6  # half the flow takes, half rests


@strawberry.type
class WrappedPayload:
    results: list[bare_app.PlaceOrderPayload]
    errors: list[bare_app.UserError]


@strawberry.type
class WrappedMutation:
    @strawberry.mutation
    def place_orders(self, inputs: list[bare_app.PlaceOrderInput]) -> WrappedPayload:
        refused = bare_app.PlaceOrderPayload(
            order=None,
            fills=[],
            errors=[bare_app.UserError(code="INVALID_INPUT", field="price", message="no")],
        )
        results = [bare_app._accept(e) if e.price else refused for e in inputs]
        return WrappedPayload(results=results, errors=[])


def _schema(mutation: type) -> strawberry.Schema:
    return strawberry.Schema(
        query=bare_app.Query,
        mutation=mutation,
        config=StrawberryConfig(scalar_map={Decimal: bare_app.DECIMAL}),
    )


@pytest.mark.parametrize(
    "schema", [bare_app.schema, _schema(WrappedMutation)], ids=["list", "wrapped"]
)
def test_the_batch_path_finds_placeorders_and_counts_each_entry(schema: strawberry.Schema) -> None:
    """The shape the issue gives (``placeOrders(inputs: [PlaceOrderInput!]!)``, one result
    per entry) is found by introspection, whether the entries come as a list or inside a
    payload, and every entry is counted: accepted, or refused with its errors."""
    introspected = schema.execute_sync(INTROSPECTION)
    assert introspected.data is not None
    document = batch_document(introspected.data["__schema"])
    assert document is not None and "placeOrders(inputs: $inputs)" in document
    entries = [ENTRY] * 3 + [{**ENTRY, "price": None}]
    answer = schema.execute_sync(document, variable_values={"inputs": entries})
    assert answer.errors is None
    tally = Tally()
    tally.add(200, json.dumps({"data": answer.data}).encode())
    expected = (4, 0) if schema is bare_app.schema else (3, 1)  # the bare app refuses nothing
    assert (tally.orders, tally.refused) == expected
    assert tally.answers == 1 and tally.errors == 0


def test_no_placeorders_means_no_batch_row() -> None:
    @strawberry.type
    class Single:
        @strawberry.mutation
        def place_order(self, input: bare_app.PlaceOrderInput) -> bare_app.PlaceOrderPayload:
            return bare_app._accept(input)

    introspected = _schema(Single).execute_sync(INTROSPECTION)
    assert introspected.data is not None
    assert batch_document(introspected.data["__schema"]) is None
    answer = _schema(Single).execute_sync(PLACE_ORDER, variable_values={"input": ENTRY})
    assert answer.errors is None


def test_the_restart_time_is_read_from_the_restart_benchmark_json() -> None:
    assert restart_seconds({"orders": 100_000, "ready_seconds": 2.5}) == 2.5
    assert restart_seconds({"ok": True, "orders": 5, "restart_s": 1}) == 1.0
    assert restart_seconds({"orders": 100_000}) is None


def _positive_latencies(row: dict[str, Any]) -> None:
    latency = row["latency_ms"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["p99.9"] <= latency["max"]


@pytest.mark.e2e
def test_quick_run_writes_every_row(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--quick",
            "--rates",
            "200",
            "--fanout",
            "20",
            "--fanout-seconds",
            "2",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads((out / "bench.json").read_text())
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "table.md").read_text()
    assert "placeOrder end to end, saturation" in table
    assert "fan-out: orderBook depth 10 to 20 subscribers" in table

    bare, real = figures["baseline"], figures["placeOrder"]
    for row in (bare, real):
        saturated = row["saturation"]
        assert saturated["orders_per_s"] > 0 and saturated["errors"] == 0, saturated["error_sample"]
        assert saturated["accepted_orders"] > 0 and saturated["refused_entries"] == 0
        assert saturated["connections"] == 32
        assert [r["offered_per_s"] for r in row["rates"]] == [200]
        for each in row["rates"]:
            _positive_latencies(each)
            assert each["errors"] == 0 and each["refused_entries"] == 0, each["error_sample"]
    assert real["saturation"]["fills"] > 0  # orders crossed and filled
    assert real["processes"]["worker"] == 1 and real["processes"]["API"] >= 1

    parts = real["saturation"]["resources"]
    assert {"API", "worker", "PostgreSQL backends", "load generator"} <= set(parts)
    for name in ("API", "worker", "PostgreSQL backends", "load generator"):
        assert parts[name]["cpu_us_per_order"] > 0, name
    for name in ("API", "worker", "PostgreSQL backends"):
        assert parts[name]["rss_mb"] > 10, name
    assert bare["saturation"]["resources"]["API (bare Strawberry)"]["cpu_us_per_order"] > 0

    assert figures["baseline_batch"]["available"] and figures["baseline_batch"]["orders_per_s"] > 0
    batch = figures["placeOrders"]
    if batch["available"]:
        assert batch["orders_per_s"] > 0 and batch["errors"] == 0, batch["error_sample"]
    else:
        assert batch["note"] == "no placeOrders in the schema"
    restart = figures["restart"]
    assert restart["available"] is False or restart["seconds"] > 0, restart
    engine = figures["engine"]
    assert engine["available"], engine
    assert (
        engine["commands_per_s"] > 0 and engine["p99_us"] > 0 and engine["ratio_to_pyorderbook"] > 0
    )

    # The fan-out rows: the Node driver (graphql-ws) against the bare app and the real API.
    baseline_fanout, real_fanout = figures["fanout"]
    assert baseline_fanout["label"] == "bare Strawberry" and real_fanout["label"] == "API"
    for row in (baseline_fanout, real_fanout):
        assert row["available"], row
        assert row["connected"] == row["clients"] == 20 and row["errors"] == 0, row
        assert row["bids_placed"] == 40 and row["published_updates"] == 40, row
        # All of them, on a quiet machine; the smoke checks the measuring, not the speed.
        assert row["received_fraction"] > 0.5 and row["caught_up_fraction"] > 0, row
        assert 0 < row["latency_ms"]["p50"] <= row["latency_ms"]["p99"] <= row["latency_ms"]["max"]
        assert row["api_rss_mb"]["subscribed"] > 10
