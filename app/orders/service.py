"""Trading: validate, dispatch to the matching worker, read back what it committed.

The API never writes orders, trades or balances: every change is a command on the bus,
and the answer is read from PostgreSQL after the worker has committed it. What is checked
before sending (the market, its grid, its status) comes from the process's market cache;
KYC is checked by the worker, which holds every user's status.

A batch (:meth:`TradingService.place_many`, :meth:`TradingService.cancel_many`) is one
command: entries refused here are answered without being sent, the others travel together
and come back with one result each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.kit.bus import CommandBus
from app.kit.commands import WORKER_CODES, camel, dispatch
from app.kit.errors import Problem
from app.kit.money import MAX_AMOUNT, MAX_DECIMALS, plain_text
from app.kit.pagination import Page, PageRequest
from app.markets.cache import MarketInfo
from app.markets.service import MarketService
from app.orders import errors, repository
from app.orders.models import Order, Trade
from app.wire import MAX_BATCH_ENTRIES
from engine import CLIENT_ORDER_ID

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

    order: Order | None = None
    fills: Sequence[Trade] = ()
    cancelled_count: int = 0
    problems: list[Problem] = field(default_factory=list)


_plain = plain_text
ANY_STEP = Decimal(1).scaleb(-MAX_DECIMALS)
"""The finest grid: any amount with at most MAX_DECIMALS decimals is on it."""


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

    async def _outcome(self, reply: dict[str, Any]) -> Outcome:
        async with self._sessions() as session:
            order = await session.get(Order, reply["order_id"]) if reply["order_id"] else None
            fill_ids = [fill["id"] for fill in reply["fills"]]
            fills = await repository.trades_by_ids(session, fill_ids) if fill_ids else []
        return Outcome(order=order, fills=fills, cancelled_count=len(reply["cancelled"]))

    async def _checked(self, request: PlaceOrderRequest) -> dict[str, Any] | list[Problem]:
        """The order as the worker takes it, or why it is refused before sending."""
        market = await self._markets.get(request.symbol)
        if problems := validate_place(request, market):
            return problems
        assert market is not None
        return {
            "symbol": market.symbol,
            "side": request.side,
            "type": request.type,
            "quantity": _plain(request.quantity),
            "price": _plain(request.price) if request.price is not None else None,
            "time_in_force": request.time_in_force,
            "post_only": request.post_only,
            "client_order_id": request.client_order_id,
        }

    async def place(self, user_id: int, request: PlaceOrderRequest) -> Outcome:
        """Place one order (the worker refuses it with KYC_REQUIRED unless KYC approved)."""
        order = await self._checked(request)
        if isinstance(order, list):
            return Outcome(problems=order)
        # A retry after a timeout is safe when it names the same clientOrderId: the engine
        # answers a repeated one with the original order.
        reply = await dispatch(
            self._bus, "place", {"user_id": user_id, **order}, timeout=self._timeout
        )
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
        orders: list[dict[str, Any]] = []
        for request in requests:
            order = await self._checked(request)
            if isinstance(order, list):
                outcomes.append(Outcome(problems=order))
            else:
                outcomes.append(None)
                orders.append(order)
        if orders:
            sent = await self._batch("place_batch", {"user_id": user_id, "entries": orders})
            answers = iter(
                sent if isinstance(sent, list) else [Outcome(problems=[sent])] * len(orders)
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
        wanted = [order_id for order_id in order_ids if order_id is not None]
        sent: list[Outcome] | Problem = []
        if wanted:
            entries = [{"order_id": order_id} for order_id in wanted]
            sent = await self._batch("cancel_batch", {"user_id": user_id, "entries": entries})
        answers = iter(sent if isinstance(sent, list) else [Outcome(problems=[sent])] * len(wanted))
        missing = Outcome(problems=[Problem(errors.NOT_FOUND, "no such open order", "id")])
        outcomes = []
        for order_id in order_ids:
            outcome = missing if order_id is None else next(answers)
            if any(problem.code == errors.NOT_FOUND for problem in outcome.problems):
                outcome = missing
            outcomes.append(outcome)
        return outcomes

    async def _batch(self, kind: str, payload: dict[str, Any]) -> list[Outcome] | Problem:
        """One batch command; the outcome of each entry sent, in order."""
        reply = await dispatch(self._bus, kind, payload, timeout=self._timeout)
        if isinstance(reply, Problem):
            return reply
        results = reply["entries"]
        done = [result for result in results if result["ok"]]
        order_ids = [result["order_id"] for result in done if result["order_id"]]
        fill_ids = [fill["id"] for result in done for fill in result["fills"]]
        async with self._sessions() as session:
            orders = {o.id: o for o in await repository.orders_by_ids(session, order_ids)}
            fills = {t.id: t for t in await repository.trades_by_ids(session, fill_ids)}
        outcomes = []
        for result in results:
            if not result["ok"]:
                error = result["error"]
                code = WORKER_CODES.get(error["code"], errors.INVALID_INPUT)
                outcomes.append(
                    Outcome(problems=[Problem(code, error["message"], camel(error["field"]))])
                )
                continue
            outcomes.append(
                Outcome(
                    order=orders.get(result["order_id"]),
                    fills=[fills[fill["id"]] for fill in result["fills"]],
                    cancelled_count=len(result["cancelled"]),
                )
            )
        return outcomes

    async def amend(self, user_id: int, request: AmendOrderRequest) -> Outcome:
        """Change an open order. Its market is not known here without a read: the worker
        checks the grid (and that the order is the caller's and open)."""
        problems: list[Problem] = []
        if request.quantity is None and request.price is None:
            problems.append(Problem(errors.INVALID_INPUT, "give a new quantity or price", None))
        if request.quantity is not None:
            _check_amount(request.quantity, ANY_STEP, "quantity", "quantity", problems)
        if request.price is not None:
            _check_amount(request.price, ANY_STEP, "price", "price", problems)
        if problems:
            return Outcome(problems=problems)
        reply = await dispatch(
            self._bus,
            "amend",
            {
                "user_id": user_id,
                "order_id": request.order_id,
                "quantity": _plain(request.quantity) if request.quantity is not None else None,
                "price": _plain(request.price) if request.price is not None else None,
            },
            timeout=self._timeout,
        )
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
        payload = {"user_id": user_id, "order_id": order_id, "client_order_id": client_order_id}
        reply = await dispatch(self._bus, "cancel", payload, timeout=self._timeout)
        if isinstance(reply, Problem):
            if reply.code == errors.NOT_FOUND:
                field = "id" if order_id is not None else "clientOrderId"
                return Outcome(problems=[Problem(errors.NOT_FOUND, "no such open order", field)])
            return Outcome(problems=[reply])
        return await self._outcome(reply)

    async def cancel_all(self, user_id: int, symbol: str | None) -> Outcome:
        if symbol is not None and await self._markets.get(symbol) is None:
            return Outcome(problems=[Problem(errors.INVALID_INPUT, "no such market", "symbol")])
        reply = await dispatch(
            self._bus,
            "cancel_all",
            {"user_id": user_id, "symbol": symbol.upper() if symbol else None},
            timeout=self._timeout,
        )
        if isinstance(reply, Problem):
            return Outcome(problems=[reply])
        return Outcome(cancelled_count=len(reply["cancelled"]))

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
