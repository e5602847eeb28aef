"""Trading: validate, dispatch to the matching worker, answer with what it committed.

The API never writes orders, trades or balances: every change is a command on the bus,
and the worker's reply carries the order and its fills as it committed them
(:class:`app.wire.StoredOrder`, :class:`app.wire.Trade`): nothing is read back. The reads
(order lists, fills) return the same wire types, so each is shown to clients one way.
What is checked before sending (the market, its grid, its status) comes from the process's
market cache; KYC is checked by the worker, which holds every user's status.

A batch (:meth:`TradingService.place_many`, :meth:`TradingService.cancel_many`) is one
command: entries refused here are answered without being sent, the others travel together
and come back with one reply each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import wire
from app.kit.bus import CommandBus
from app.kit.commands import dispatch, problem
from app.kit.errors import Problem
from app.kit.money import MAX_AMOUNT, MAX_DECIMALS, plain_text
from app.kit.pagination import Page, PageRequest
from app.markets.cache import MarketInfo
from app.markets.service import MarketService
from app.orders import errors, repository
from app.orders.models import Order, Trade
from app.wire import MAX_BATCH_ENTRIES
from engine import CLIENT_ORDER_ID, CancelReason, OrderStatus, OrderType, Side, TimeInForce

OPEN_STATUSES = ("PENDING", "PARTIAL")


@dataclass(frozen=True, slots=True)
class PlaceOrderRequest:
    symbol: str
    side: str
    type: str
    quantity: Decimal
    price: Decimal | None = None
    time_in_force: str = "GTC"
    post_only: bool = False
    client_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class AmendOrderRequest:
    order_id: int
    quantity: Decimal | None = None
    price: Decimal | None = None


@dataclass
class Outcome:
    """What a trading command did: the order it concerns, its fills, or why it was refused."""

    order: wire.StoredOrder | None = None
    fills: Sequence[wire.Trade] = ()
    cancelled_count: int = 0
    problems: list[Problem] = field(default_factory=list)


_plain = plain_text
_text = wire.decimal_text
_UNIT = Decimal("0.00000001")


def stored_order(row: Order) -> wire.StoredOrder:
    """An ``orders`` row read from PostgreSQL, as the worker replies with it."""
    return wire.StoredOrder(
        id=row.id,
        user_id=row.user_id,
        symbol=row.symbol,
        side=Side(row.side),
        type=OrderType(row.type),
        time_in_force=TimeInForce(row.time_in_force),
        post_only=row.post_only,
        quantity=_text(row.quantity),
        price=None if row.price is None else _text(row.price),
        filled_quantity=_text(row.filled_quantity),
        status=OrderStatus(row.status),
        client_order_id=row.client_order_id,
        cancel_reason=None if row.cancel_reason is None else CancelReason(row.cancel_reason),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def stored_trade(row: Trade) -> wire.Trade:
    """A ``trades`` row read from PostgreSQL, as the worker replies with it."""
    buyer_took = row.taker_side == Side.BUY
    return wire.Trade(
        id=row.id,
        symbol=row.symbol,
        price=_text(row.price),
        quantity=_text(row.quantity),
        # As the engine computes it: price × quantity, rounded down to the unit.
        quote_quantity=_text((row.price * row.quantity).quantize(_UNIT, ROUND_DOWN)),
        taker_side=Side(row.taker_side),
        maker_order_id=row.seller_order_id if buyer_took else row.buyer_order_id,
        taker_order_id=row.buyer_order_id if buyer_took else row.seller_order_id,
        buyer_user_id=row.buyer_user_id,
        seller_user_id=row.seller_user_id,
        buyer_order_id=row.buyer_order_id,
        seller_order_id=row.seller_order_id,
        buyer_fee=_text(row.buyer_fee),
        seller_fee=_text(row.seller_fee),
        executed_at=row.executed_at,
    )


def _check_amount(
    value: Decimal, step: Decimal, name: str, what: str, problems: list[Problem]
) -> None:
    """``value`` comes from the strict ``Decimal`` scalar (``app.kit.money.parse_amount``);
    the range and decimals are checked again so that no arithmetic below can overflow."""
    if not value.is_finite() or value <= 0:
        problems.append(Problem(errors.INVALID_INPUT, f"{what} must be positive", name))
    elif value > MAX_AMOUNT:
        problems.append(Problem(errors.INVALID_INPUT, f"{what} is at most {MAX_AMOUNT}", name))
    elif value.as_tuple().exponent < -MAX_DECIMALS:  # type: ignore[operator]
        problems.append(
            Problem(errors.INVALID_INPUT, f"{what} has more than {MAX_DECIMALS} decimals", name)
        )
    elif value % step:
        problems.append(
            Problem(errors.INVALID_INPUT, f"{what} must be a multiple of {_plain(step)}", name)
        )


def validate_place(request: PlaceOrderRequest, market: MarketInfo | None) -> list[Problem]:
    """Everything the API can check before the worker sees the order."""
    problems: list[Problem] = []
    if market is None:
        return [Problem(errors.INVALID_INPUT, f"no market {request.symbol!r}", "symbol")]
    if market.halted:
        return [Problem(errors.MARKET_HALTED, f"{market.symbol} is halted", "symbol")]
    if request.client_order_id is not None and not CLIENT_ORDER_ID.fullmatch(
        request.client_order_id
    ):
        problems.append(
            Problem(
                errors.INVALID_INPUT,
                "clientOrderId has 1 to 64 letters, digits or . _ : -",
                "clientOrderId",
            )
        )
    _check_amount(request.quantity, market.lot_size, "quantity", "quantity", problems)
    if request.type == "LIMIT":
        if request.price is None:
            problems.append(Problem(errors.INVALID_INPUT, "a LIMIT order needs a price", "price"))
        else:
            _check_amount(request.price, market.tick_size, "price", "price", problems)
            if not problems and request.price * request.quantity < market.min_notional:
                problems.append(
                    Problem(
                        errors.INVALID_INPUT,
                        f"price × quantity must be at least {_plain(market.min_notional)} "
                        f"{market.quote_asset}",
                        "quantity",
                    )
                )
        if request.post_only and request.time_in_force != "GTC":
            problems.append(Problem(errors.INVALID_INPUT, "postOnly orders are GTC", "timeInForce"))
    else:
        if request.price is not None:
            problems.append(Problem(errors.INVALID_INPUT, "a MARKET order takes no price", "price"))
        if request.post_only:
            problems.append(
                Problem(errors.INVALID_INPUT, "postOnly is for LIMIT orders", "postOnly")
            )
    return problems


class TradingService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        bus: CommandBus,
        markets: MarketService,
        *,
        timeout: float,
    ) -> None:
        self._sessions = sessions
        self._bus = bus
        self._markets = markets
        self._timeout = timeout

    async def _outcome(self, reply: wire.Reply) -> Outcome:
        """The reply's order and fills; only a repeated ``clientOrderId`` (whose original
        the worker may no longer hold) is read back, as it is now."""
        order = reply.order
        if order is None and reply.order_id is not None:
            async with self._sessions() as session:
                row = await session.get(Order, reply.order_id)
            order = stored_order(row) if row is not None else None
        return Outcome(order=order, fills=reply.fills, cancelled_count=len(reply.cancelled))

    async def _checked(self, request: PlaceOrderRequest) -> wire.OrderEntry | list[Problem]:
        """The order as the worker takes it, or why it is refused before sending."""
        market = await self._markets.get(request.symbol)
        if problems := validate_place(request, market):
            return problems
        assert market is not None
        return wire.OrderEntry(
            symbol=market.symbol,
            side=Side(request.side),
            type=OrderType(request.type),
            quantity=_plain(request.quantity),
            price=_plain(request.price) if request.price is not None else None,
            time_in_force=TimeInForce(request.time_in_force),
            post_only=request.post_only,
            client_order_id=request.client_order_id,
        )

    async def place(self, user_id: int, request: PlaceOrderRequest) -> Outcome:
        """Place one order (the worker refuses it with KYC_REQUIRED unless KYC approved)."""
        entry = await self._checked(request)
        if isinstance(entry, list):
            return Outcome(problems=entry)
        command = wire.Place(user_id=user_id, **msgspec.structs.asdict(entry))
        # A retry after a timeout is safe when it names the same clientOrderId: the engine
        # answers a repeated one with the original order.
        reply = await dispatch(self._bus, command, timeout=self._timeout)
        if isinstance(reply, Problem):
            return Outcome(problems=[reply])
        return await self._outcome(reply)

    async def place_many(
        self, user_id: int, requests: Sequence[PlaceOrderRequest]
    ) -> list[Outcome] | Problem:
        """Place up to MAX_BATCH_ENTRIES orders in one command: one outcome per request, in
        order; more requests are refused as a whole (nothing is placed).

        Retrying a whole batch is safe for the orders that name a clientOrderId."""
        if len(requests) > MAX_BATCH_ENTRIES:
            return Problem(
                errors.INVALID_INPUT,
                f"a batch has at most {MAX_BATCH_ENTRIES} orders, not {len(requests)}",
                "inputs",
            )
        outcomes: list[Outcome | None] = []
        entries: list[wire.OrderEntry] = []
        for request in requests:
            entry = await self._checked(request)
            if isinstance(entry, list):
                outcomes.append(Outcome(problems=entry))
            else:
                outcomes.append(None)
                entries.append(entry)
        if entries:
            sent = await self._batch(wire.PlaceBatch(user_id=user_id, entries=entries))
            answers = iter(
                sent if isinstance(sent, list) else [Outcome(problems=[sent])] * len(entries)
            )
            outcomes = [outcome or next(answers) for outcome in outcomes]
        return [outcome for outcome in outcomes if outcome is not None]

    async def cancel_many(
        self, user_id: int, order_ids: Sequence[int | None]
    ) -> list[Outcome] | Problem:
        """Cancel up to MAX_BATCH_ENTRIES of the user's open orders in one command; ``None``
        stands for an id that names no order (answered NOT_FOUND without being sent)."""
        if len(order_ids) > MAX_BATCH_ENTRIES:
            return Problem(
                errors.INVALID_INPUT,
                f"a batch has at most {MAX_BATCH_ENTRIES} cancels, not {len(order_ids)}",
                "ids",
            )
        wanted = [wire.CancelEntry(order_id=order_id) for order_id in order_ids if order_id]
        sent: list[Outcome] | Problem = []
        if wanted:
            sent = await self._batch(wire.CancelBatch(user_id=user_id, entries=wanted))
        answers = iter(sent if isinstance(sent, list) else [Outcome(problems=[sent])] * len(wanted))
        missing = Outcome(problems=[Problem(errors.NOT_FOUND, "no such open order", "id")])
        outcomes = []
        for order_id in order_ids:
            outcome = missing if order_id is None else next(answers)
            if any(problem.code == errors.NOT_FOUND for problem in outcome.problems):
                outcome = missing
            outcomes.append(outcome)
        return outcomes

    async def _batch(self, command: wire.PlaceBatch | wire.CancelBatch) -> list[Outcome] | Problem:
        """One batch command; the outcome of each entry sent, in order (answered from the
        reply; the originals of repeated clientOrderIds are read back in one query)."""
        reply = await dispatch(self._bus, command, timeout=self._timeout)
        if isinstance(reply, Problem):
            return reply
        originals = [
            entry.order_id
            for entry in reply.entries
            if entry.ok and entry.order is None and entry.order_id is not None
        ]
        stored: dict[int, wire.StoredOrder] = {}
        if originals:
            async with self._sessions() as session:
                rows = await repository.orders_by_ids(session, originals)
            stored = {row.id: stored_order(row) for row in rows}
        outcomes = []
        for entry in reply.entries:
            if not entry.ok:
                assert entry.error is not None
                outcomes.append(Outcome(problems=[problem(entry.error)]))
                continue
            order = entry.order
            if order is None and entry.order_id is not None:
                order = stored.get(entry.order_id)
            outcomes.append(
                Outcome(order=order, fills=entry.fills, cancelled_count=len(entry.cancelled))
            )
        return outcomes

    async def amend(self, user_id: int, request: AmendOrderRequest) -> Outcome:
        """The amounts are checked here as amounts; the worker, which holds the order,
        checks them against its market's grid (and that the order is the caller's)."""
        problems: list[Problem] = []
        if request.quantity is None and request.price is None:
            problems.append(Problem(errors.INVALID_INPUT, "give a new quantity or price", None))
        if request.quantity is not None:
            _check_amount(request.quantity, _UNIT, "quantity", "quantity", problems)
        if request.price is not None:
            _check_amount(request.price, _UNIT, "price", "price", problems)
        if problems:
            return Outcome(problems=problems)
        command = wire.Amend(
            user_id=user_id,
            order_id=request.order_id,
            quantity=_plain(request.quantity) if request.quantity is not None else None,
            price=_plain(request.price) if request.price is not None else None,
        )
        reply = await dispatch(self._bus, command, timeout=self._timeout)
        if isinstance(reply, Problem):
            if reply.code == errors.NOT_FOUND:
                return Outcome(problems=[Problem(errors.NOT_FOUND, "no such order", "id")])
            return Outcome(problems=[reply])
        return await self._outcome(reply)

    async def cancel(
        self, user_id: int, *, order_id: int | None, client_order_id: str | None
    ) -> Outcome:
        if (order_id is None) == (client_order_id is None):
            return Outcome(
                problems=[Problem(errors.INVALID_INPUT, "give either id or clientOrderId", "id")]
            )
        command = wire.Cancel(user_id=user_id, order_id=order_id, client_order_id=client_order_id)
        reply = await dispatch(self._bus, command, timeout=self._timeout)
        if isinstance(reply, Problem):
            if reply.code == errors.NOT_FOUND:
                field = "id" if order_id is not None else "clientOrderId"
                return Outcome(problems=[Problem(errors.NOT_FOUND, "no such open order", field)])
            return Outcome(problems=[reply])
        return await self._outcome(reply)

    async def cancel_all(self, user_id: int, symbol: str | None) -> Outcome:
        if symbol is not None and await self._markets.get(symbol) is None:
            return Outcome(problems=[Problem(errors.INVALID_INPUT, "no such market", "symbol")])
        command = wire.CancelAll(user_id=user_id, symbol=symbol.upper() if symbol else None)
        reply = await dispatch(self._bus, command, timeout=self._timeout)
        if isinstance(reply, Problem):
            return Outcome(problems=[reply])
        return Outcome(cancelled_count=len(reply.cancelled))

    # Reads: the caller's own data only.

    async def order(self, user_id: int, order_id: int) -> Order | None:
        async with self._sessions() as session:
            return await repository.get_order(session, user_id, order_id)

    async def orders(
        self,
        user_id: int,
        request: PageRequest,
        *,
        symbol: str | None = None,
        statuses: Sequence[str] | None = None,
    ) -> Page[Order]:
        async with self._sessions() as session:
            return await repository.list_orders(
                session, user_id, request, symbol=symbol, statuses=statuses
            )

    async def fills(
        self, user_id: int, request: PageRequest, *, symbol: str | None = None
    ) -> Page[Trade]:
        async with self._sessions() as session:
            return await repository.list_fills(session, user_id, request, symbol=symbol)

    async def trades(self, symbol: str, request: PageRequest) -> Page[Trade]:
        async with self._sessions() as session:
            return await repository.list_trades(session, symbol.upper(), request)

    async def orders_by_ids(self, ids: Sequence[int]) -> Sequence[Order]:
        async with self._sessions() as session:
            return await repository.orders_by_ids(session, ids)
