"""The benchmark's outputs: the terminal table, ``bench.json`` and ``bench.png``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TARGETS = {
    "ratio": 0.5,
    "orders_per_s": 1_000,
    "p99_ms_at_500": 10.0,
    "batch_orders_per_s": 20_000,
    "restart_s": 3.0,
    "engine_commands_per_s": 300_000,
    "engine_ratio": 1.5,
}


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _latency(row: dict[str, Any]) -> str:
    lat = row["latency_ms"]
    if not lat:
        return "no answers"
    text = f"{lat['p50']:,.1f} / {lat['p99']:,.1f} / {lat['p99.9']:,.1f} ms"
    if row["unsent"] or row["answered_per_s"] < 0.95 * row["offered_per_s"]:
        text += f" (answered {row['answered_per_s']:,.0f}/s)"
    if row["errors"]:
        text += f", {row['errors']} errors"
    return text


def _resources(resources: dict[str, dict[str, float]]) -> tuple[str, str]:
    cpu = " · ".join(f"{part} {r['cpu_us_per_order']:,.0f}" for part, r in resources.items())
    total = sum(r["cpu_us_per_order"] for r in resources.values())
    memory = " · ".join(
        f"{part} {r['rss_mb']:,.0f}"
        + (f" ({r['processes']:.0f} proc)" if r["processes"] > 1 else "")
        for part, r in resources.items()
        if r["rss_mb"] is not None
    )
    return f"{cpu} (total {total:,.0f}) µs", f"{memory} MB"


def headline(figures: dict[str, Any]) -> float:
    bare = figures["baseline"]["saturation"]["orders_per_s"]
    return float(figures["placeOrder"]["saturation"]["orders_per_s"] / bare) if bare else 0.0


def targets(figures: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets against this run's figures (None where the row is n/a)."""
    real = figures["placeOrder"]
    at_500 = [r for r in real["rates"] if r["offered_per_s"] == 500 and r["latency_ms"]]
    batch, restart, engine = figures["placeOrders"], figures["restart"], figures["engine"]
    checks: dict[str, tuple[float | None, float, bool]] = {}  # name: (figure, target, higher)
    checks["placeOrder / baseline at saturation"] = (headline(figures), TARGETS["ratio"], True)
    checks["placeOrder orders/s at saturation"] = (
        real["saturation"]["orders_per_s"],
        TARGETS["orders_per_s"],
        True,
    )
    checks["placeOrder p99 ms at 500/s"] = (
        at_500[0]["latency_ms"]["p99"] if at_500 else None,
        TARGETS["p99_ms_at_500"],
        False,
    )
    checks["placeOrders orders/s"] = (
        batch["orders_per_s"] if batch.get("available") else None,
        TARGETS["batch_orders_per_s"],
        True,
    )
    checks["restart seconds"] = (
        restart["seconds"] if restart.get("available") else None,
        TARGETS["restart_s"],
        False,
    )
    checks["engine commands/s"] = (
        engine["commands_per_s"] if engine.get("available") else None,
        TARGETS["engine_commands_per_s"],
        True,
    )
    checks["engine ÷ pyorderbook"] = (
        engine["ratio_to_pyorderbook"] if engine.get("available") else None,
        TARGETS["engine_ratio"],
        True,
    )
    return {
        name: {
            "figure": figure,
            "target": target,
            "met": None if figure is None else (figure >= target if higher else figure <= target),
        }
        for name, (figure, target, higher) in checks.items()
    }


def _duration(ms: float) -> str:
    return f"{ms:,.1f} ms" if ms < 1000 else f"{ms / 1e3:,.2f} s"


def _fanout_figure(row: dict[str, Any]) -> str:
    lat = row["latency_ms"]
    text = (
        "p50 / p99 / max " + " / ".join(_duration(lat[q]) for q in ("p50", "p99", "max"))
        if lat
        else "no updates received"
    )
    text += (
        f" · {row['bids_placed']:,} bids placed at {row['offered_updates_per_s']:g}/s"
        f" · received {row['received_fraction']:.1%} of {row['published_updates']:,} updates"
        f" · {row['caught_up_fraction']:.0%} got the last one"
        f" · {row['rss_kb_per_subscriber']:,.0f} KB memory per subscriber"
        f" (RSS {row['api_rss_mb']['before']:,.0f} → {row['api_rss_mb']['subscribed']:,.0f} MB"
        f", {row['api_rss_mb']['after_run']:,.0f} MB after the updates)"
    )
    if "server_cpu_us_per_message" in row:
        text += (
            f" · CPU per message: server {row['server_cpu_us_per_message']:,.0f}"
            f" · driver {row['driver_cpu_us_per_message']:,.0f} µs"
        )
    if row["connected"] < row["clients"] or row["errors"]:
        text += f" ({row['connected']:,} connected, {row['errors']} errors)"
    return text


def fanout_rows(rows: list[dict[str, Any]], cores: int) -> list[tuple[str, str, str, str]]:
    """One line per fan-out run: latency from the worker's publish to each client."""
    out = []
    for row in rows:
        name = f"fan-out: orderBook depth 10 to {row['clients']:,} subscribers"
        if row.get("label") != "API":
            name = (
                f"baseline: {row.get('label', 'bare')} orderBook to {row['clients']:,} subscribers"
            )
        if not row.get("available"):
            out.append((name, f"n/a ({row['note']})", "", ""))
            continue
        where = (
            f"{row['connected']:,} WebSockets · {row['label']} ×{row['api_processes']}"
            + (", worker, PostgreSQL, Redis" if row["label"] == "API" else ", Redis")
            + f" · 1 Node driver · {cores} cores"
        )
        out.append((name, _fanout_figure(row), where, ""))
    return out


def table(figures: dict[str, Any]) -> str:
    meta, bare, real = figures["meta"], figures["baseline"], figures["placeOrder"]
    cores, conns = meta["cores"], meta["connections"]
    api = real["processes"]["API"]
    where_bare = f"{conns} conns · 1 uvicorn · {cores} cores"
    where_real = f"{conns} conns · API ×{api}, worker ×1, PostgreSQL, Redis · {cores} cores"
    ratio = headline(figures)
    real_rate = real["saturation"]["orders_per_s"]
    rows: list[tuple[str, str, str, str]] = [
        (
            "baseline: bare Strawberry mutation, saturation",
            f"{bare['saturation']['orders_per_s']:,.0f} req/s",
            where_bare,
            "",
        ),
    ]
    for each in bare["rates"]:
        rows.append(
            (
                f"baseline at {each['offered_per_s']:,.0f}/s: p50 / p99 / p99.9",
                _latency(each),
                where_bare,
                "",
            )
        )
    many = figures.get("baseline_processes")
    if many is not None:
        many_rate = many["saturation"]["orders_per_s"]
        rows.append(
            (
                f"baseline ×{many['processes']} processes, saturation",
                f"{many_rate:,.0f} req/s (placeOrder = {real_rate / many_rate:.2f}× of it)"
                if many_rate
                else "n/a",
                f"{conns} conns · {many['processes']} uvicorn processes · {cores} cores",
                "",
            )
        )
    fills = real["saturation"]["fills"] / max(real["saturation"]["accepted_orders"], 1)
    rows.append(
        (
            "placeOrder end to end, saturation",
            f"{real_rate:,.0f} orders/s = {ratio:.2f}× baseline ({fills:.2f} fills/order)",
            where_real,
            "≥ 0.5× and ≥ 1,000/s: "
            + _verdict(ratio >= TARGETS["ratio"] and real_rate >= TARGETS["orders_per_s"]),
        )
    )
    for each in real["rates"]:
        target = ""
        if each["offered_per_s"] == 500 and each["latency_ms"]:
            target = (
                f"p99 ≤ 10 ms: {_verdict(each['latency_ms']['p99'] <= TARGETS['p99_ms_at_500'])}"
            )
        rows.append(
            (
                f"placeOrder at {each['offered_per_s']:,.0f}/s: p50 / p99 / p99.9",
                _latency(each),
                where_real,
                target,
            )
        )
    bare_batch = figures["baseline_batch"]
    if bare_batch.get("available"):
        rows.append(
            (
                f"baseline: bare placeOrders × {bare_batch['batch_size']}, saturation",
                f"{bare_batch['orders_per_s']:,.0f} orders/s "
                f"({bare_batch['requests_per_s']:,.0f} req/s)",
                where_bare,
                "",
            )
        )
    batch = figures["placeOrders"]
    if batch.get("available"):
        versus = (
            f" = {batch['orders_per_s'] / bare_batch['orders_per_s']:.2f}× baseline"
            if bare_batch.get("available") and bare_batch["orders_per_s"]
            else ""
        )
        rows.append(
            (
                f"placeOrders × {batch['batch_size']}, saturation",
                f"{batch['orders_per_s']:,.0f} orders/s "
                f"({batch['requests_per_s']:,.0f} req/s){versus}",
                where_real,
                f"≥ 20,000/s: {_verdict(batch['orders_per_s'] >= TARGETS['batch_orders_per_s'])}",
            )
        )
    else:
        rows.append(("placeOrders × 100, saturation", f"n/a ({batch['note']})", "", "≥ 20,000/s"))
    restart = figures["restart"]
    if restart.get("available"):
        met = _verdict(restart["seconds"] <= TARGETS["restart_s"])
        rows.append(
            (
                f"worker restart, {restart['orders']:,} resting orders",
                f"{restart['seconds']:.2f} s",
                "worker ×1, PostgreSQL, Redis",
                f"≤ 3 s: {met}",
            )
        )
    else:
        rows.append(
            (
                f"worker restart, {restart.get('orders', 100_000):,} resting orders",
                f"n/a ({restart['note']})",
                "",
                "≤ 3 s",
            )
        )
    engine = figures["engine"]
    if engine.get("available"):
        ok = (
            engine["commands_per_s"] >= TARGETS["engine_commands_per_s"]
            and engine["ratio_to_pyorderbook"] >= TARGETS["engine_ratio"]
        )
        rows.append(
            (
                "engine alone (bench.engine): mixed cmd/s · p99 · ÷ pyorderbook",
                f"{engine['commands_per_s']:,.0f} cmd/s · {engine['p99_us']:.1f} µs · "
                f"{engine['ratio_to_pyorderbook']:.2f}×",
                "1 thread",
                f"≥ 300,000 and ≥ 1.5×: {_verdict(ok)}",
            )
        )
    else:
        rows.append(("engine alone (bench.engine)", f"n/a ({engine['note']})", "", ""))
    rows += fanout_rows(figures.get("fanout", []), cores)
    for name, row in (
        ("placeOrder", real["saturation"]),
        ("baseline", bare["saturation"]),
        ("placeOrders", batch if batch.get("available") else None),
    ):
        if row and row.get("resources"):
            cpu, memory = _resources(row["resources"])
            rows.append((f"{name}, saturation: CPU per order", cpu, "", ""))
            rows.append((f"{name}, saturation: resident memory", memory, "", ""))
    header = (
        f"TradeGraph benchmark — {meta['date']}, {meta['host']}, {cores} cores, Python "
        f"{meta['python']}{' (--quick)' if meta['quick'] else ''}; load: {meta['load_generator']}, "
        f"{conns} keep-alive connections, {meta['traders']} traders; saturation "
        f"{meta['saturate_s']:g} s, each rate {meta['rate_s']:g} s; latency from each request's "
        "scheduled send time"
    )
    lines = [
        header,
        "",
        "| measure | figure | load · processes · cores | target |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def chart(figures: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = ["bare Strawberry", "placeOrder"]
    values = [
        figures["baseline"]["saturation"]["orders_per_s"],
        figures["placeOrder"]["saturation"]["orders_per_s"],
    ]
    if figures["baseline_batch"].get("available"):
        names.append(f"bare ×{figures['baseline_batch']['batch_size']}")
        values.append(figures["baseline_batch"]["orders_per_s"])
    if figures["placeOrders"].get("available"):
        names.append(f"placeOrders ×{figures['placeOrders']['batch_size']}")
        values.append(figures["placeOrders"]["orders_per_s"])
    colors = ["#999999", "#1f77b4", "#cccccc", "#2ca02c"]
    bars = left.bar(names, values, color=colors[: len(values)])
    left.set_yscale("log")
    left.bar_label(bars, labels=[f"{v:,.0f}" for v in values])
    left.axhline(1000, color="red", linestyle=":", label="target 1,000 orders/s")
    left.set_ylabel("orders/s at saturation")
    left.set_title(f"saturation, {figures['meta']['connections']} connections")
    left.legend()
    for name, style in (("baseline", "--"), ("placeOrder", "-")):
        rows = [r for r in figures[name]["rates"] if r["latency_ms"]]
        offered = [r["offered_per_s"] for r in rows]
        for q, color in (("p50", "#1f77b4"), ("p99", "#ff7f0e"), ("p99.9", "#d62728")):
            right.plot(
                offered,
                [r["latency_ms"][q] for r in rows],
                style,
                marker="o",
                color=color,
                label=f"{name} {q}",
            )
    right.axhline(10, color="red", linestyle=":", label="p99 target 10 ms")
    right.set_yscale("log")
    right.set_xlabel("offered orders/s")
    right.set_ylabel("latency from scheduled send, ms")
    right.set_title("fixed offered rate")
    right.legend(fontsize=7)
    fig.suptitle(
        f"TradeGraph benchmark, {figures['meta']['date']}, {figures['meta']['cores']} cores"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(figures: dict[str, Any], text: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    figures = {**figures, "targets": targets(figures)}
    (folder / "bench.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    (folder / "table.md").write_text(text + "\n")
    chart(figures, folder / "bench.png")
