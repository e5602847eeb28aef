"""Property-based tests over random command sequences from several accounts.

After every command: money is conserved per asset (fee account included), locked equals
what open orders reserve, nothing is negative, no book is crossed, and every fill is the
one a deliberately simple reference matcher expects. Stopping, snapshotting and restoring
anywhere yields the same events as never stopping.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import (
    SCALE,
    AmendOrder,
    BalanceChanged,
    BalanceReason,
    CancelAllOrders,
    CancelOrder,
    Command,
    Deposit,
    Engine,
    Event,
    HaltMarket,
    MarketSpec,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderType,
    PlaceOrder,
    ResumeMarket,
    SetFeeTier,
    Side,
    TimeInForce,
    TradeExecuted,
    Withdraw,
)

FEE_ACCOUNT = 0
USERS = (1, 2, 3, 4)
TICK = SCALE // 100  # 0.01
LOT = SCALE // 1000  # 0.001
MARKETS = (
    MarketSpec("BTC-USDT", "BTC", "USDT", TICK, LOT, min_notional=SCALE // 20),
    MarketSpec("ETH-USDT", "ETH", "USDT", TICK, LOT),
)
SYMBOLS = tuple(m.symbol for m in MARKETS)
ASSETS = ("BTC", "ETH", "USDT")
LOTS = {m.symbol: m.lot_size for m in MARKETS}

# ---------------------------------------------------------------- command generation

users = st.sampled_from(USERS)
OWNER = -1
"""A user id that ``resolve`` replaces by the owner of an open order."""
owners = st.sampled_from([*USERS, OWNER, OWNER, OWNER, OWNER])
symbols = st.sampled_from(SYMBOLS)
prices = st.integers(9_990, 10_010).map(lambda ticks: ticks * TICK)  # 99.90 .. 100.10
quantities = st.integers(1, 40).map(lambda lots: lots * LOT)
client_ids = st.sampled_from([None] * 6 + ["a", "b", "c"])
order_ids = st.integers(1, 12)

limit_orders = st.builds(
    PlaceOrder,
    user_id=users,
    symbol=symbols,
    side=st.sampled_from(Side),
    type=st.just(OrderType.LIMIT),
    quantity=quantities,
    price=prices,
    time_in_force=st.sampled_from([TimeInForce.GTC] * 4 + [TimeInForce.IOC, TimeInForce.FOK]),
    post_only=st.sampled_from([False] * 5 + [True]),
    client_order_id=client_ids,
)
market_orders = st.builds(
    PlaceOrder,
    user_id=users,
    symbol=symbols,
    side=st.sampled_from(Side),
    type=st.just(OrderType.MARKET),
    quantity=quantities,
    price=st.none(),
    time_in_force=st.sampled_from(TimeInForce),
    client_order_id=client_ids,
)
admin_commands = st.one_of(
    st.builds(HaltMarket, symbol=symbols, reason=st.just("test"), cancel_orders=st.booleans()),
    st.builds(ResumeMarket, symbol=symbols),
    st.builds(SetFeeTier, user_id=users, tier=st.integers(1, 5)),
    st.builds(CancelAllOrders, user_id=users, symbol=st.none() | symbols),
)
money_commands = st.one_of(
    st.builds(
        Deposit,
        user_id=users,
        asset=st.sampled_from(ASSETS),
        amount=st.integers(1, 5_000 * SCALE),
    ),
    st.builds(
        Withdraw,
        user_id=users,
        asset=st.sampled_from(ASSETS),
        amount=st.integers(1, 500 * SCALE),
    ),
)


def weighted(*choices: tuple[int, st.SearchStrategy[Command]]) -> st.SearchStrategy[Command]:
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


# Mostly limit orders, so books fill up and cross; the rest in rough proportion to a real flow.
commands = weighted(
    (60, limit_orders),
    (6, market_orders),
    (
        10,
        st.builds(
            AmendOrder,
            user_id=owners,
            order_id=order_ids,
            quantity=st.none() | quantities,
            price=st.none() | prices,
        ),
    ),
    (10, st.builds(CancelOrder, user_id=owners, order_id=order_ids)),
    (3, st.builds(CancelOrder, user_id=users, client_order_id=st.sampled_from(["a", "b", "c"]))),
    (6, money_commands),
    (3, admin_commands),
)
sequences = st.lists(commands, min_size=10, max_size=60)


def resolve(engine: Engine, command: Command) -> Command:
    """Point amends and cancels sent by OWNER at an open order (the id picks which one)
    and send them as its owner."""
    if isinstance(command, AmendOrder | CancelOrder) and command.user_id == OWNER:
        open_orders = engine.snapshot().orders
        if not open_orders:
            return replace(command, user_id=USERS[0])
        order = open_orders[(command.order_id or 0) % len(open_orders)]
        return replace(command, user_id=order.user_id, order_id=order.order_id)
    return command


def funded_engine() -> Engine:
    engine = Engine(MARKETS, FEE_ACCOUNT)
    for user_id in USERS:
        for asset, amount in (("BTC", 30), ("ETH", 30), ("USDT", 5_000)):
            engine.process(Deposit(user_id, asset, amount * SCALE))
    return engine


# ---------------------------------------------------------------- the reference matcher


@dataclass
class RefOrder:
    order_id: int
    user_id: int
    side: Side
    price: int
    remaining: int
    priority: int


class ReferenceMatcher:
    """Price-time priority the slow, obvious way: sort every resting order on each match.

    It follows the engine's decisions on what is accepted, cancelled or amended (those
    depend on balances it does not keep) and predicts every fill on its own.
    """

    def __init__(self) -> None:
        self.books: dict[str, list[RefOrder]] = {symbol: [] for symbol in SYMBOLS}
        self.quantities: dict[int, int] = {}  # order id -> its current quantity
        self.budget_before = 0  # the placing user's available quote before the command

    def queue(self, symbol: str, side: Side) -> list[RefOrder]:
        """Resting orders of one side, best price first, then earliest."""
        orders = [o for o in self.books[symbol] if o.side is side]
        if side is Side.BUY:
            return sorted(orders, key=lambda o: (-o.price, o.priority))
        return sorted(orders, key=lambda o: (o.price, o.priority))

    def match(
        self,
        symbol: str,
        taker: RefOrder,
        limit_price: int | None,
        budget: int | None,
        all_or_none: bool,
    ) -> list[tuple[int, int, int]]:
        """Fills ``(maker id, price, quantity)`` for ``taker``; updates the makers."""
        other = Side.SELL if taker.side is Side.BUY else Side.BUY
        fills: list[tuple[int, int, int]] = []
        wanted = taker.remaining
        for maker in self.queue(symbol, other):
            if wanted == 0:
                break
            if limit_price is not None and (
                maker.price > limit_price if taker.side is Side.BUY else maker.price < limit_price
            ):
                break
            if maker.user_id == taker.user_id:
                break  # self-trade prevention ends matching
            full = quantity = min(wanted, maker.remaining)
            if budget is not None:
                affordable = budget * SCALE // maker.price // LOTS[symbol] * LOTS[symbol]
                quantity = min(full, affordable)
                if quantity == 0:
                    break
                budget -= maker.price * quantity // SCALE
            fills.append((maker.order_id, maker.price, quantity))
            wanted -= quantity
            if quantity < full:
                break  # the budget ran out part way through this maker
        if all_or_none and wanted:
            return []
        for maker_id, _, quantity in fills:
            maker = next(o for o in self.books[symbol] if o.order_id == maker_id)
            maker.remaining -= quantity
            if maker.remaining == 0:
                self.books[symbol].remove(maker)
        taker.remaining = wanted
        return fills

    def remove(self, order_id: int) -> RefOrder | None:
        for orders in self.books.values():
            for order in orders:
                if order.order_id == order_id:
                    orders.remove(order)
                    return order
        return None

    def symbol_of(self, order_id: int) -> str:
        return next(s for s, orders in self.books.items() for o in orders if o.order_id == order_id)

    def apply(self, engine: Engine, command: Command, events: list[Event]) -> None:
        """Check the engine's fills for ``command`` against the reference's own."""
        trades = [
            (t.maker_order_id, t.price, t.quantity) for t in events if isinstance(t, TradeExecuted)
        ]
        accepted = [e for e in events if isinstance(e, OrderAccepted)]
        amended = [e for e in events if isinstance(e, OrderAmended)]
        expected: list[tuple[int, int, int]] = []
        if accepted:
            assert isinstance(command, PlaceOrder)
            order = accepted[0]
            taker = RefOrder(
                order.order_id, order.user_id, order.side, order.price or 0, order.quantity,
                order.priority,
            )  # fmt: skip
            market_buy = order.type is OrderType.MARKET and order.side is Side.BUY
            expected = self.match(
                order.symbol,
                taker,
                order.price,
                self.budget_before if market_buy else None,
                order.time_in_force is TimeInForce.FOK,
            )
            self.rest_unless_cancelled(order.symbol, taker, events)
        elif amended:
            change = amended[0]
            resting = self.remove(change.order_id)
            assert resting is not None
            old_remaining, old_price = resting.remaining, resting.price
            new_remaining = resting.remaining + change.quantity - self.quantities[change.order_id]
            assert change.kept_priority == (
                change.price == old_price and new_remaining <= old_remaining
            )
            resting.remaining, resting.price = new_remaining, change.price
            self.quantities[change.order_id] = change.quantity
            if change.kept_priority:
                self.books[change.symbol].append(resting)
            else:
                resting.priority = change.priority
                expected = self.match(change.symbol, resting, change.price, None, False)
                self.rest_unless_cancelled(change.symbol, resting, events)
        else:
            for event in events:
                if isinstance(event, OrderCancelled):
                    self.remove(event.order_id)
        assert trades == expected, (command, trades, expected)

    def rest_unless_cancelled(self, symbol: str, taker: RefOrder, events: list[Event]) -> None:
        cancelled = any(
            isinstance(e, OrderCancelled) and e.order_id == taker.order_id for e in events
        )
        if taker.remaining and not cancelled:
            self.books[symbol].append(taker)


EXTERNAL = (BalanceReason.DEPOSIT, BalanceReason.WITHDRAWAL)


def assert_invariants(engine: Engine, totals: dict[str, int]) -> None:
    snapshot = engine.snapshot()
    held = dict.fromkeys(ASSETS, 0)
    reserved: dict[tuple[int, str], int] = {}
    for order in snapshot.orders:
        market = next(m for m in MARKETS if m.symbol == order.symbol)
        asset = market.quote if order.side is Side.BUY else market.base
        reserved[order.user_id, asset] = reserved.get((order.user_id, asset), 0) + order.reserved
    for balance in snapshot.balances:
        assert balance.available >= 0 and balance.locked >= 0, balance
        assert balance.locked == reserved.get((balance.user_id, balance.asset), 0), balance
        held[balance.asset] += balance.available + balance.locked
    assert held == totals
    for market in MARKETS:
        bids, asks = engine.depth(market.symbol, Side.BUY), engine.depth(market.symbol, Side.SELL)
        if bids and asks:
            assert bids[0][0] < asks[0][0]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequences)
def test_invariants_and_price_time_priority_hold_after_every_command(
    sequence: list[Command],
) -> None:
    engine = funded_engine()
    totals = {"BTC": 120 * SCALE, "ETH": 120 * SCALE, "USDT": 20_000 * SCALE}
    reference = ReferenceMatcher()
    for command in sequence:
        command = resolve(engine, command)
        if isinstance(command, PlaceOrder):
            reference.budget_before = engine.balance(command.user_id, "USDT")[0]
        events = engine.process(command)
        for event in events:
            if isinstance(event, BalanceChanged) and event.reason in EXTERNAL:
                totals[event.asset] += event.available_delta
            elif isinstance(event, OrderAccepted):
                reference.quantities[event.order_id] = event.quantity
        reference.apply(engine, command, events)
        assert_invariants(engine, totals)
    # The reference's book is the engine's book, queue order included.
    restored = {
        (o.symbol, o.side, o.price, o.priority, o.order_id, o.quantity - o.filled_quantity)
        for o in engine.snapshot().orders
    }
    assert restored == {
        (symbol, o.side, o.price, o.priority, o.order_id, o.remaining)
        for symbol, orders in reference.books.items()
        for o in orders
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequences, sequences, st.randoms(use_true_random=False))
def test_snapshot_restore_continue_equals_never_stopping(
    before: list[Command], after: list[Command], rng: random.Random
) -> None:
    straight = funded_engine()
    stopped = funded_engine()
    for command in before:
        command = resolve(straight, command)
        assert straight.process(command) == stopped.process(command)
    snapshot = stopped.snapshot()
    # Rebuilt from database rows: orders and balances come in any order.
    orders, balances = list(snapshot.orders), list(snapshot.balances)
    rng.shuffle(orders)
    rng.shuffle(balances)
    restored = Engine.restore(replace(snapshot, orders=orders, balances=balances))
    assert restored.snapshot() == snapshot
    for command in after:
        command = resolve(straight, command)
        assert restored.process(command) == straight.process(command)
    assert restored.snapshot() == straight.snapshot()


@settings(max_examples=50, deadline=None)
@given(sequences)
def test_the_same_commands_always_yield_the_same_events(sequence: list[Command]) -> None:
    first, second = funded_engine(), funded_engine()
    for command in sequence:
        command = resolve(first, command)
        assert first.process(command) == second.process(command)
