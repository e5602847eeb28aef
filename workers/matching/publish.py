"""After a commit: the Redis order-book cache and the events on pub/sub (the worker itself
sends the replies, in the same pipeline, after these).

Every message is one of :mod:`app.wire`'s types. The cache (`orderbook:{symbol}:bids|asks`,
the seed's keys) holds one member per price level: score = the price in 1e-8 units (exact
in a double below 2^53), member = a :class:`app.wire.BookLevel` (``{"price", "quantity",
"orders"}`` with decimal strings). ``orderbook:{symbol}:seq`` holds
the sequence of the last delta applied, written in the same MULTI as the levels and the
delta message, so a reader that takes (levels, seq) atomically can join the delta stream
without a gap.
"""

from __future__ import annotations

from collections import defaultdict

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
    OrderCancelled,
    RiskEventRaised,
    Side,
    TradeExecuted,
)
from engine.enums import BalanceReason
from workers.matching.store import Batch, moment

SIDE_KEY = {Side.BUY: "bids", Side.SELL: "asks"}
amount = wire.amount_text


def level_member(price: int, quantity: int, orders: int) -> bytes:
    return wire.encode(
        wire.BookLevel(price=amount(price), quantity=amount(quantity), orders=orders)
    )


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
    changes: list[wire.LevelChange],
) -> None:
    args: list[str | bytes | int] = [
        changes[-1].sequence,
        wire.encode(wire.BookDelta(symbol=symbol, levels=changes)),
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


ACTIVITY_MAXLEN = 200_000
"""About how many entries the activity stream keeps (Settings.activity_stream_maxlen)."""


def activity_items(events: list[Event], at: float) -> list[wire.ActivityItem]:
    """What the risk monitor reads of one committed batch: its accepted and cancelled
    orders, trades, prevented self-trades and withdrawals (one pass, no lookups)."""
    items: list[wire.ActivityItem] = []
    for event in events:
        match event:
            case OrderAccepted():
                items.append(
                    wire.OrderPlaced(
                        order_id=event.order_id,
                        user_id=event.user_id,
                        symbol=event.symbol,
                        side=event.side,
                        order_type=event.type,
                        quantity=amount(event.quantity),
                        price=None if event.price is None else amount(event.price),
                        at=at,
                    )
                )
            case OrderCancelled():
                items.append(
                    wire.OrderWithdrawn(
                        order_id=event.order_id,
                        user_id=event.user_id,
                        symbol=event.symbol,
                        reason=event.reason,
                        filled=amount(event.filled_quantity),
                        at=at,
                    )
                )
            case TradeExecuted():
                items.append(
                    wire.TradeDone(
                        trade_id=event.trade_id,
                        symbol=event.symbol,
                        price=amount(event.price),
                        quantity=amount(event.quantity),
                        buyer_user_id=event.buyer_user_id,
                        seller_user_id=event.seller_user_id,
                        buyer_order_id=event.buyer_order_id,
                        seller_order_id=event.seller_order_id,
                        at=at,
                    )
                )
            case RiskEventRaised() if event.rule == "self_trade" and event.user_id is not None:
                items.append(
                    wire.SelfTradePrevented(
                        user_id=event.user_id, order_id=event.order_id, symbol=event.symbol, at=at
                    )
                )
            case BalanceChanged() if event.reason is BalanceReason.WITHDRAWAL:
                items.append(
                    wire.WithdrawalMade(
                        user_id=event.user_id,
                        asset=event.asset,
                        amount=amount(-event.available_delta),
                        at=at,
                    )
                )
    return items


def publish_events(
    pipe: Pipeline,
    keys: Keys,
    events: list[Event],
    risk_ids: list[int],
    batch: Batch,
    activity_maxlen: int = ACTIVITY_MAXLEN,
) -> None:
    """Queue the cache updates and pub/sub messages of one committed batch on ``pipe``.

    The cache gets each price level's final state once per batch; the delta messages keep
    every change, so subscribers see a contiguous sequence. Orders and trades are shown as
    ``batch`` stored them. ``pipe`` need not be a transaction: each symbol's cache update
    is one atomic script.
    """
    levels: dict[str, dict[tuple[Side, int], BookLevelChanged]] = defaultdict(dict)
    deltas: dict[str, list[wire.LevelChange]] = defaultdict(list)
    risk_iter = iter(risk_ids)
    for event in events:
        match event:
            case BalanceChanged():  # the most frequent; not published (balances are read)
                continue
            case BookLevelChanged():
                levels[event.symbol][event.side, event.price] = event
                deltas[event.symbol].append(
                    wire.LevelChange(
                        sequence=event.sequence,
                        side=event.side,
                        price=amount(event.price),
                        quantity=amount(event.quantity),
                        orders=event.order_count,
                    )
                )
            case RiskEventRaised():
                alert = wire.RiskAlert(
                    id=next(risk_iter, None),
                    user_id=event.user_id,
                    event_type=event.event_type,
                    severity=event.severity,
                    description=event.description,
                    order_id=event.order_id,
                    symbol=event.symbol,
                    rule=event.rule,
                )
                pipe.publish(keys.risk_channel(), wire.encode(alert))
            case MarketHalted():
                status = wire.MarketStatusChanged(
                    symbol=event.symbol,
                    status=MarketStatus.HALTED,
                    reason=event.reason or None,
                    resumes_at=None if event.until_ms is None else moment(event.until_ms),
                )
                pipe.publish(keys.book_channel(event.symbol), wire.encode(status))
                # Every API process's market cache follows this one channel.
                pipe.publish(keys.markets_channel(), wire.encode(status))
            case MarketResumed():
                status = wire.MarketStatusChanged(symbol=event.symbol, status=MarketStatus.TRADING)
                pipe.publish(keys.book_channel(event.symbol), wire.encode(status))
                pipe.publish(keys.markets_channel(), wire.encode(status))
    for symbol, changes in deltas.items():
        apply_book_delta(pipe, keys, symbol, list(levels[symbol].values()), changes)
    trades: dict[str, list[wire.Trade]] = defaultdict(list)
    for trade in batch.trades:
        trades[trade.symbol].append(trade)
    for symbol, symbol_trades in trades.items():
        message = wire.TradesEvent(symbol=symbol, trades=symbol_trades)
        pipe.publish(keys.trades_channel(symbol), wire.encode(message))
    for user_id, user_events in batch.user_events.items():
        mine = wire.UserEvents(user_id=user_id, events=user_events)
        pipe.publish(keys.user_channel(user_id), wire.encode(mine))
    # The risk monitor's feed: durable (a stream), one entry per batch, after the commit.
    items = activity_items(events, batch.executed_at.timestamp())
    if items:
        pipe.xadd(
            keys.activity_stream(),
            {"data": wire.encode(wire.Activity(items=items))},
            maxlen=activity_maxlen,
            approximate=True,
        )


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
