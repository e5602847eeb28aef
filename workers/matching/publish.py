"""After a commit: the Redis order-book cache and the events on pub/sub (the worker itself
sends the replies, in the same pipeline, after these).

The cache (`orderbook:{symbol}:bids|asks`, the seed's keys) holds one member per price
level: score = the price in 1e-8 units (exact in a double below 2^53), member = JSON
``{"price", "quantity", "orders"}`` with decimal strings. ``orderbook:{symbol}:seq`` holds
the sequence of the last delta applied, written in the same MULTI as the levels and the
delta message, so a reader that takes (levels, seq) atomically can join the delta stream
without a gap.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from app import wire
from app.kit.redis import Keys
from engine import (
    BalanceChanged,
    BookLevelChanged,
    Engine,
    Event,
    MarketHalted,
    MarketResumed,
    MarketStatus,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderUpdated,
    RiskEventRaised,
    Side,
    TradeExecuted,
)
from engine.units import show
from workers.matching.codec import trade_json

SIDE_KEY = {Side.BUY: "bids", Side.SELL: "asks"}


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def level_member(price: int, quantity: int, orders: int) -> str:
    return _dumps({"price": show(price), "quantity": show(quantity), "orders": orders})


APPLY_BOOK_DELTA = """
-- KEYS: bids, asks, sequence, channel. ARGV: sequence, delta message, then per level
-- side ("b"/"a"), score, member ("" when the level is gone).
for i = 3, #ARGV, 3 do
    local key = ARGV[i] == "b" and KEYS[1] or KEYS[2]
    redis.call("ZREMRANGEBYSCORE", key, ARGV[i + 1], ARGV[i + 1])
    if ARGV[i + 2] ~= "" then
        redis.call("ZADD", key, ARGV[i + 1], ARGV[i + 2])
    end
end
redis.call("SET", KEYS[3], ARGV[1])
return redis.call("PUBLISH", KEYS[4], ARGV[2])
"""
"""One symbol's batch of level changes, its sequence and its delta message, atomically: a
reader taking (levels, sequence) in one MULTI never sees half of a batch."""


def apply_book_delta(
    pipe: Pipeline,
    keys: Keys,
    symbol: str,
    levels: list[BookLevelChanged],
    changes: list[dict[str, Any]],
) -> None:
    args: list[str | int] = [
        changes[-1]["sequence"],
        _dumps({"type": "delta", "symbol": symbol, "levels": changes}),
    ]
    for level in levels:
        member = level_member(level.price, level.quantity, level.order_count)
        args += [
            "b" if level.side is Side.BUY else "a",
            level.price,
            member if level.quantity else "",
        ]
    pipe.eval(
        APPLY_BOOK_DELTA,
        4,
        keys.order_book(symbol, "bids"),
        keys.order_book(symbol, "asks"),
        keys.book_sequence(symbol),
        keys.book_channel(symbol),
        *args,
    )


def order_message(event: Event) -> dict[str, Any] | None:
    match event:
        case OrderAccepted():
            return {
                "type": "order",
                "event": "accepted",
                "order_id": event.order_id,
                "symbol": event.symbol,
                "side": event.side.value,
                "order_type": event.type.value,
                "quantity": show(event.quantity),
                "price": show(event.price) if event.price is not None else None,
                "status": "PENDING",
                "filled_quantity": "0",
                "client_order_id": event.client_order_id,
            }
        case OrderUpdated():
            return {
                "type": "order",
                "event": "updated",
                "order_id": event.order_id,
                "symbol": event.symbol,
                "status": event.status.value,
                "filled_quantity": show(event.filled_quantity),
            }
        case OrderCancelled():
            return {
                "type": "order",
                "event": "cancelled",
                "order_id": event.order_id,
                "symbol": event.symbol,
                "status": "CANCELLED",
                "filled_quantity": show(event.filled_quantity),
                "reason": event.reason.value,
            }
        case OrderAmended():
            return {
                "type": "order",
                "event": "amended",
                "order_id": event.order_id,
                "symbol": event.symbol,
                "quantity": show(event.quantity),
                "price": show(event.price),
            }
    return None


def publish_events(
    pipe: Pipeline, keys: Keys, events: list[Event], risk_ids: list[int], executed_at: str
) -> None:
    """Queue the cache updates and pub/sub messages of one committed batch on ``pipe``.

    The cache gets each price level's final state once per batch; the delta messages keep
    every change, so subscribers see a contiguous sequence. ``pipe`` need not be a
    transaction: each symbol's cache update is one atomic script.
    """
    levels: dict[str, dict[tuple[Side, int], BookLevelChanged]] = defaultdict(dict)
    deltas: dict[str, list[dict[str, Any]]] = defaultdict(list)
    trades: dict[str, list[dict[str, Any]]] = defaultdict(list)
    user_messages: dict[int, list[dict[str, Any]]] = defaultdict(list)
    risk_iter = iter(risk_ids)
    for event in events:
        match event:
            case BalanceChanged():  # the most frequent; not published (balances are read)
                continue
            case BookLevelChanged():
                levels[event.symbol][event.side, event.price] = event
                deltas[event.symbol].append(
                    {
                        "sequence": event.sequence,
                        "side": event.side.value,
                        "price": show(event.price),
                        "quantity": show(event.quantity),
                        "orders": event.order_count,
                    }
                )
            case TradeExecuted():
                trade = {**trade_json(event), "executed_at": executed_at}
                trades[event.symbol].append(trade)
                user_messages[event.buyer_user_id].append({"type": "fill", "side": "BUY", **trade})
                user_messages[event.seller_user_id].append(
                    {"type": "fill", "side": "SELL", **trade}
                )
            case RiskEventRaised():
                pipe.publish(
                    keys.risk_channel(),
                    _dumps(
                        {
                            "id": next(risk_iter, None),
                            "user_id": event.user_id,
                            "event_type": event.event_type.value,
                            "severity": event.severity.value,
                            "description": event.description,
                            "order_id": event.order_id,
                            "symbol": event.symbol,
                        }
                    ),
                )
            case MarketHalted() | MarketResumed():
                status = "HALTED" if isinstance(event, MarketHalted) else "TRADING"
                pipe.publish(
                    keys.book_channel(event.symbol),
                    _dumps({"type": "status", "symbol": event.symbol, "status": status}),
                )
                # Every API process's market cache follows this one channel.
                pipe.publish(
                    keys.markets_channel(),
                    wire.encode(
                        wire.MarketStatusChanged(
                            symbol=event.symbol,
                            status=MarketStatus(status),
                            reason=(event.reason or None)
                            if isinstance(event, MarketHalted)
                            else None,
                        )
                    ),
                )
            case _:
                message = order_message(event)
                if message is not None:
                    user_messages[event.user_id].append(message)  # type: ignore[union-attr]
    for symbol, changes in deltas.items():
        apply_book_delta(pipe, keys, symbol, list(levels[symbol].values()), changes)
    for symbol, symbol_trades in trades.items():
        pipe.publish(
            keys.trades_channel(symbol), _dumps({"symbol": symbol, "trades": symbol_trades})
        )
    for user_id, messages in user_messages.items():
        pipe.publish(keys.user_channel(user_id), _dumps({"user_id": user_id, "events": messages}))


async def rebuild_book_cache(redis: Redis, keys: Keys, engine: Engine) -> None:
    """Replace the cached books with the engine's (after a restart)."""
    snapshot = engine.snapshot()
    levels: dict[tuple[str, Side, int], list[int]] = {}
    for order in snapshot.orders:
        level = levels.setdefault((order.symbol, order.side, order.price), [0, 0])
        level[0] += order.remaining
        level[1] += 1
    async with redis.pipeline(transaction=True) as pipe:
        for market in snapshot.markets:
            for side in Side:
                pipe.delete(keys.order_book(market.symbol, SIDE_KEY[side]))
            pipe.set(keys.book_sequence(market.symbol), engine.book_sequence(market.symbol))
        for (symbol, side, price), (quantity, count) in levels.items():
            pipe.zadd(
                keys.order_book(symbol, SIDE_KEY[side]),
                {level_member(price, quantity, count): price},
            )
        await pipe.execute()
