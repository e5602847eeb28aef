"""The matching engine: commands in, events out, deterministic and free of I/O.

``Engine.process(command)`` validates the command completely before it changes anything, so
a rejected command leaves the state untouched and yields a single ``CommandRejected``.
The rules are the brief's section 3; the choices it leaves open are in docs/adr/.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Final, cast

from engine.accounts import Accounts, Balance
from engine.book import BookSide, Order, OrderBook
from engine.commands import (
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    Command,
    Deposit,
    HaltMarket,
    PlaceOrder,
    ResumeMarket,
    SetFeeTier,
    SetMarketLimits,
    SetPositionLimit,
    SetTradingSuspension,
    Tick,
    Withdraw,
)
from engine.enums import (
    BalanceReason,
    CancelReason,
    MarketStatus,
    OrderStatus,
    OrderType,
    RejectCode,
    RiskEventType,
    RiskSeverity,
    Side,
    TimeInForce,
)
from engine.events import (
    BalanceChanged,
    BookLevelChanged,
    CommandRejected,
    Event,
    FeeTierChanged,
    MarketHalted,
    MarketLimitsChanged,
    MarketResumed,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderDuplicate,
    OrderUpdated,
    PositionLimitChanged,
    RiskEventRaised,
    TradeExecuted,
    TradingSuspensionChanged,
)
from engine.market import DEFAULT_FEE_TIERS, DEFAULT_TIER, FeeRates, MarketSpec
from engine.risk import NO_LIMITS, MarketLimits, PriceWatch, percent
from engine.snapshot import BalanceState, EngineSnapshot, RestingOrderState
from engine.units import MAX_AMOUNT, PPM, SCALE, show

# Final: compiled, each is a C static instead of a global and an attribute lookup.
BUY: Final = Side.BUY
SELL: Final = Side.SELL
LIMIT: Final = OrderType.LIMIT
MARKET: Final = OrderType.MARKET
GTC: Final = TimeInForce.GTC
IOC: Final = TimeInForce.IOC
FOK: Final = TimeInForce.FOK
PARTIAL: Final = OrderStatus.PARTIAL
FILLED: Final = OrderStatus.FILLED
TRADE: Final = BalanceReason.TRADE
FEE: Final = BalanceReason.FEE
ORDER_LOCK: Final = BalanceReason.ORDER_LOCK
ORDER_UNLOCK: Final = BalanceReason.ORDER_UNLOCK
HALTED: Final = MarketStatus.HALTED
TRADING: Final = MarketStatus.TRADING
RISK_REJECTED: Final = RejectCode.RISK_REJECTED

# Accept the enum members and their plain string values alike (StrEnum hashes as str).
_SIDES: dict[object, Side] = {s: s for s in Side}
_TYPES: dict[object, OrderType] = {t: t for t in OrderType}
_TIFS: dict[object, TimeInForce] = {t: t for t in TimeInForce}

_NO_LIMIT: Final = 1 << 200
"""Key limit of a market order: above every price key."""

MAX_CLIENT_ORDER_ID_LENGTH = 64
_MAX_ID_LENGTH = MAX_CLIENT_ORDER_ID_LENGTH
CLIENT_ORDER_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_CLIENT_ORDER_ID_LENGTH}}}")
"""What a client order id may be (``fullmatch``), as the orders table's CHECK has it. The
engine only needs its length; the API and the worker refuse any other before it is stored."""


class _Rejected(Exception):
    """Raised by validation before anything changes; becomes a ``CommandRejected``."""

    def __init__(
        self, code: RejectCode, message: str, field: str | None = None, rule: str | None = None
    ) -> None:
        super().__init__(message)
        self.event = CommandRejected(code, message, field, rule)


def _below_max(value: int, field: str) -> int:
    if value > MAX_AMOUNT:
        raise _Rejected(
            RejectCode.INVALID_INPUT, f"{field} is above the largest {show(MAX_AMOUNT)}", field
        )
    return value


def _positive_int(value: object, field: str) -> int:
    if type(value) is not int or value <= 0:
        raise _Rejected(RejectCode.INVALID_INPUT, f"{field} must be a positive integer", field)
    return _below_max(value, field)


def _on_grid(value: object, step: int, field: str) -> int:
    if type(value) is not int or value <= 0:
        raise _Rejected(RejectCode.INVALID_INPUT, f"{field} must be positive", field)
    _below_max(value, field)
    if value % step:
        raise _Rejected(
            RejectCode.INVALID_INPUT, f"{field} is not a multiple of {show(step)}", field
        )
    return value


def _checked_place(
    cmd: PlaceOrder, book: OrderBook
) -> tuple[Side, OrderType, TimeInForce, bool, int]:
    """Validate a place completely; returns (side, type, time in force, post-only, price),
    the price being 0 for a MARKET order. Raises ``_Rejected`` on the first problem."""
    if type(cmd.user_id) is not int:
        raise _Rejected(RejectCode.INVALID_INPUT, "user_id must be an integer", "user_id")
    side = _SIDES.get(cmd.side)
    if side is None:
        raise _Rejected(RejectCode.INVALID_INPUT, "side must be BUY or SELL", "side")
    order_type = _TYPES.get(cmd.type)
    if order_type is None:
        raise _Rejected(RejectCode.INVALID_INPUT, "type must be LIMIT or MARKET", "type")
    tif = _TIFS.get(cmd.time_in_force)
    if tif is None:
        raise _Rejected(
            RejectCode.INVALID_INPUT, "time_in_force must be GTC, IOC or FOK", "time_in_force"
        )
    post_only = cmd.post_only
    if post_only is not False and post_only is not True:
        raise _Rejected(RejectCode.INVALID_INPUT, "post_only must be a boolean", "post_only")
    client_order_id = cmd.client_order_id
    if client_order_id is not None and (
        type(client_order_id) is not str or not 0 < len(client_order_id) <= _MAX_ID_LENGTH
    ):
        raise _Rejected(
            RejectCode.INVALID_INPUT,
            f"client_order_id must be 1 to {_MAX_ID_LENGTH} characters",
            "client_order_id",
        )
    quantity = _on_grid(cmd.quantity, book.lot_size, "quantity")
    if order_type is LIMIT:
        price = _on_grid(cmd.price, book.tick_size, "price")
        if price * quantity // SCALE < book.min_notional:
            raise _Rejected(
                RejectCode.INVALID_INPUT,
                f"order value is below the minimum notional {show(book.min_notional)}",
                "quantity",
            )
        if post_only and tif is not GTC:
            raise _Rejected(RejectCode.INVALID_INPUT, "post_only orders must be GTC", "post_only")
    else:
        if cmd.price is not None:
            raise _Rejected(RejectCode.INVALID_INPUT, "a MARKET order takes no price", "price")
        if post_only:
            raise _Rejected(
                RejectCode.INVALID_INPUT, "post_only applies to LIMIT orders", "post_only"
            )
        price = 0
    if book.status is HALTED:
        raise _Rejected(RejectCode.MARKET_HALTED, f"{book.symbol} is halted", "symbol")
    return side, order_type, tif, post_only, price


class Engine:
    """All markets, order books and balances of the exchange, driven one command at a time.

    ``markets`` are the tradable markets; ``fee_account_id`` receives every fee;
    ``fee_tiers`` maps a tier number to its rates (users without a tier are on tier 1);
    ``max_open_orders_per_user``, if set, rejects a resting order beyond it (RISK_REJECTED).
    """

    def __init__(
        self,
        markets: Iterable[MarketSpec],
        fee_account_id: int,
        fee_tiers: Mapping[int, FeeRates] = DEFAULT_FEE_TIERS,
        *,
        max_open_orders_per_user: int | None = None,
        market_limits: Mapping[str, MarketLimits] | None = None,
        position_limits: Mapping[str, int] | None = None,
    ) -> None:
        if DEFAULT_TIER not in fee_tiers:
            raise ValueError(f"the fee tier table must contain tier {DEFAULT_TIER}")
        self._fee_account_id = fee_account_id
        self._fee_tiers = dict(fee_tiers)
        self._default_rates = self._fee_tiers[DEFAULT_TIER]
        self._user_tiers: dict[int, int] = {}
        self._user_rates: dict[int, FeeRates] = {}
        self._max_open_orders = max_open_orders_per_user
        self._accounts = Accounts()
        self._balances = self._accounts.by_user
        self._books: dict[str, OrderBook] = {}
        self._assets: set[str] = set()
        self._supply: dict[str, int] = {}
        """Units of each asset held on the exchange (trades move them, never create them)."""
        for spec in markets:
            if spec.symbol in self._books:
                raise ValueError(f"duplicate market {spec.symbol}")
            self._books[spec.symbol] = OrderBook(
                spec,
                self._accounts.get(fee_account_id, spec.base),
                self._accounts.get(fee_account_id, spec.quote),
            )
            self._assets.update((spec.base, spec.quote))
        self._orders: dict[int, Order] = {}
        self._user_orders: dict[int, dict[int, Order]] = {}
        self._client_order_ids: dict[tuple[int, str], int] = {}
        self._next_order_id = 1
        self._next_trade_id = 1
        self._now_ms = 0
        """The last tick's time: trades are dated by it in the breaker's window."""
        self._position_limits: dict[str, int] = dict(position_limits or {})
        """Default largest position per asset (holding plus open buys)."""
        self._user_limits: dict[tuple[int, str], int] = {}
        """Per-user overrides of the default position limits."""
        self._suspended: dict[int, str] = {}
        """Users whose trading an admin suspended, with the reason."""
        for symbol, limits in (market_limits or {}).items():
            if symbol not in self._books:
                raise ValueError(f"limits for unknown market {symbol}")
            self._apply_limits(self._books[symbol], limits)

    # ------------------------------------------------------------------ public API

    def process(self, command: Command) -> list[Event]:
        """Apply one command and return what happened, in order."""
        # An ``is`` chain, most frequent first: compiled, each test is a pointer comparison
        # and each call a direct C call (a dict of bound methods was two dynamic calls).
        kind = type(command)
        try:
            if kind is PlaceOrder:
                return self._place(cast(PlaceOrder, command))
            if kind is CancelOrder:
                return self._cancel(cast(CancelOrder, command))
            if kind is AmendOrder:
                return self._amend(cast(AmendOrder, command))
            if kind is Deposit:
                return self._deposit(cast(Deposit, command))
            if kind is Withdraw:
                return self._withdraw(cast(Withdraw, command))
            if kind is CancelAllOrders:
                return self._cancel_all(cast(CancelAllOrders, command))
            if kind is HaltMarket:
                return self._halt(cast(HaltMarket, command))
            if kind is ResumeMarket:
                return self._resume(cast(ResumeMarket, command))
            if kind is Tick:
                return self._tick(cast(Tick, command))
            if kind is SetFeeTier:
                return self._set_fee_tier(cast(SetFeeTier, command))
            if kind is SetMarketLimits:
                return self._set_market_limits(cast(SetMarketLimits, command))
            if kind is SetTradingSuspension:
                return self._set_suspension(cast(SetTradingSuspension, command))
            if kind is SetPositionLimit:
                return self._set_position_limit(cast(SetPositionLimit, command))
        except _Rejected as rejected:
            return [rejected.event]
        raise TypeError(f"not an engine command: {command!r}")

    @property
    def fee_account_id(self) -> int:
        return self._fee_account_id

    @property
    def next_order_id(self) -> int:
        return self._next_order_id

    @property
    def next_trade_id(self) -> int:
        return self._next_trade_id

    def balance(self, user_id: int, asset: str) -> tuple[int, int]:
        """``(available, locked)`` of an account's asset."""
        return self._accounts.peek(user_id, asset)

    def market(self, symbol: str) -> MarketSpec:
        book = self._books[symbol]
        return replace(book.spec, status=book.status)

    def open_order(self, order_id: int) -> RestingOrderState | None:
        order = self._orders.get(order_id)
        return None if order is None else _resting_state(order)

    def depth(self, symbol: str, side: Side, levels: int | None = None) -> list[tuple[int, int]]:
        """``(price, quantity)`` per level of one side, best first."""
        book_side = self._books[symbol].side(Side(side))
        keys = book_side.keys if levels is None else book_side.keys[:levels]
        return [(book_side.levels[key].price, book_side.levels[key].quantity) for key in keys]

    def book_sequence(self, symbol: str) -> int:
        return self._books[symbol].sequence

    def limits(self, symbol: str) -> MarketLimits:
        return self._books[symbol].limits

    def last_price(self, symbol: str) -> int | None:
        return self._books[symbol].last_price or None

    def halted_until(self, symbol: str) -> int | None:
        """When a circuit breaker's halt of the market ends (ms), if one is on."""
        book = self._books[symbol]
        return book.halted_until if book.status is HALTED and book.halted_until else None

    @property
    def next_resume_ms(self) -> int | None:
        """The earliest time a breaker halt ends: a ``Tick`` then resumes that market."""
        due = [
            b.halted_until for b in self._books.values() if b.status is HALTED and b.halted_until
        ]
        return min(due) if due else None

    @property
    def now_ms(self) -> int:
        return self._now_ms

    def trading_suspended(self, user_id: int) -> bool:
        return user_id in self._suspended

    def position_limit(self, user_id: int, asset: str) -> int | None:
        """The largest position of ``asset`` the user may build (their override, or the
        default), if any."""
        limit = self._user_limits.get((user_id, asset))
        return self._position_limits.get(asset) if limit is None else limit

    def position(self, user_id: int, asset: str) -> int:
        """Holding (available + locked) plus what the user's resting buys would add."""
        held = self._balances.get(user_id, {}).get(asset)
        return 0 if held is None else held.available + held.locked + held.buying

    # ------------------------------------------------------------------ place

    def _place(self, cmd: PlaceOrder) -> list[Event]:
        user_id = cmd.user_id
        client_order_id = cmd.client_order_id
        if client_order_id is not None:
            original = self._client_order_ids.get((user_id, client_order_id))
            if original is not None:
                return [OrderDuplicate(original, user_id, client_order_id)]
        book = self._books.get(cmd.symbol)
        if book is None:
            raise _Rejected(RejectCode.UNKNOWN_SYMBOL, f"unknown market {cmd.symbol!r}", "symbol")
        side = cmd.side
        quantity = cmd.quantity
        price = cmd.price
        # The common case, checked in one go: a plain GTC limit order on the market's grid.
        if (
            cmd.type is LIMIT
            and cmd.time_in_force is GTC
            and cmd.post_only is False
            and (side is BUY or side is SELL)
            and type(quantity) is int
            and type(price) is int
            and 0 < quantity <= MAX_AMOUNT
            and 0 < price <= MAX_AMOUNT
            and not quantity % book.lot_size
            and not price % book.tick_size
            and price * quantity // SCALE >= book.min_notional
            and book.status is TRADING
            and type(user_id) is int
            and (client_order_id is None or 0 < len(client_order_id) <= _MAX_ID_LENGTH)
        ):
            order_type, tif, post_only = LIMIT, GTC, False
        else:
            side, order_type, tif, post_only, price = _checked_place(cmd, book)
        if self._suspended and user_id in self._suspended:
            raise _Rejected(
                RISK_REJECTED,
                "trading is suspended for this account; cancels still work",
                None,
                "trading_suspended",
            )

        is_buy = side is BUY
        assets = self._balances.get(user_id)
        if is_buy:
            held = assets.get(book.quote) if assets is not None else None
            available = 0 if held is None else held.available
            if order_type is LIMIT:
                reserve = price * quantity // SCALE
                if available < reserve:
                    raise _Rejected(
                        RejectCode.INSUFFICIENT_BALANCE, f"not enough {book.quote} available"
                    )
            else:
                reserve = 0  # a market BUY pays from available as it fills
                if available <= 0:
                    raise _Rejected(
                        RejectCode.INSUFFICIENT_BALANCE, f"no {book.quote} available to buy with"
                    )
            opposite = book.asks
        else:
            held = assets.get(book.base) if assets is not None else None
            reserve = quantity
            if held is None or held.available < quantity:
                raise _Rejected(
                    RejectCode.INSUFFICIENT_BALANCE, f"not enough {book.base} available"
                )
            opposite = book.bids
        # The risk checks come after the balance: a refusal names the first thing to fix.
        band_key = 0
        if book.limits is not NO_LIMITS:
            band_key = self._check_limits(book, side, order_type, quantity, price)
        if is_buy and (self._position_limits or self._user_limits):
            self._check_position(user_id, book, assets, quantity, "quantity")
        limit_key = (price if is_buy else -price) if order_type is LIMIT else _NO_LIMIT
        if band_key:
            limit_key = band_key  # a market order stops at the price band
        best = opposite.best
        crosses = best is not None and best.key <= limit_key
        if post_only and crosses:
            raise _Rejected(
                RejectCode.POST_ONLY_WOULD_TAKE, "post-only order would take liquidity", "price"
            )
        limit = self._max_open_orders
        if (
            limit is not None
            and order_type is LIMIT
            and tif is GTC
            and len(self._user_orders.get(user_id, ())) >= limit
        ):
            raise _Rejected(
                RISK_REJECTED, f"at most {limit} open orders per account", None, "open_orders"
            )

        # Accepted: from here on, state changes.
        order_id = self._next_order_id
        self._next_order_id = order_id + 1
        if assets is None:
            assets = self._balances[user_id] = {}
        base = assets.get(book.base)
        if base is None:
            base = assets[book.base] = Balance()
        quote = assets.get(book.quote)
        if quote is None:
            quote = assets[book.quote] = Balance()
        order = Order(
            order_id,
            user_id,
            book,
            side,
            order_type,
            tif,
            price,
            quantity,
            post_only,
            client_order_id,
            order_id,
            base,
            quote,
        )
        if client_order_id is not None:
            self._client_order_ids[user_id, client_order_id] = order_id
        events: list[Event] = [
            OrderAccepted(
                order_id,
                user_id,
                book.symbol,
                side,
                order_type,
                tif,
                quantity,
                price if order_type is LIMIT else None,
                post_only,
                client_order_id,
                reserve,
                order_id,
            )
        ]
        if reserve:
            held = quote if is_buy else base
            held.available -= reserve
            held.locked += reserve
            order.reserved = reserve
            events.append(
                BalanceChanged(
                    user_id,
                    book.quote if is_buy else book.base,
                    -reserve,
                    reserve,
                    held.available,
                    held.locked,
                    ORDER_LOCK,
                    order_id,
                )
            )
        if not crosses and tif is GTC and order_type is LIMIT:
            # Nothing to match: straight into the book.
            level = (book.bids if is_buy else book.asks).append(order)
            if is_buy:
                base.buying += quantity
            self._orders[order_id] = order
            mine = self._user_orders.get(user_id)
            if mine is None:
                mine = self._user_orders[user_id] = {}
            mine[order_id] = order
            book.sequence += 1
            events.append(
                BookLevelChanged(
                    book.symbol, side, price, level.quantity, level.count, book.sequence
                )
            )
            return events
        if tif is FOK and self._fillable(order, opposite, limit_key) < quantity:
            self._end_taker(order, CancelReason.FOK, events)
            return events
        self_trade = crosses and self._match(order, opposite, limit_key, events)
        self._settle_taker(order, self_trade, events)
        return events

    # ------------------------------------------------------------------ risk checks

    def _check_limits(
        self,
        book: OrderBook,
        side: Side,
        order_type: OrderType,
        quantity: int,
        price: int,
        *,
        band: bool = True,
    ) -> int:
        """The market's order size limits and price band. Returns, for a MARKET order, the
        key its matching must stop at (the band's edge; 0 if there is no band)."""
        limits = book.limits
        max_quantity = limits.max_order_quantity
        if max_quantity is not None and quantity > max_quantity:
            raise _Rejected(
                RISK_REJECTED,
                f"quantity {show(quantity)} is above the largest order on {book.symbol}, "
                f"{show(max_quantity)} {book.base}",
                "quantity",
                "order_size",
            )
        max_notional = limits.max_order_notional
        if max_notional is not None and order_type is LIMIT:
            value = price * quantity // SCALE
            if value > max_notional:
                raise _Rejected(
                    RISK_REJECTED,
                    f"order value {show(value)} {book.quote} is above the largest order on "
                    f"{book.symbol}, {show(max_notional)} {book.quote}",
                    "quantity",
                    "order_size",
                )
        band_ppm = limits.price_band_ppm
        if band_ppm is None or not band:
            return 0
        reference = book.last_price
        what = "the last trade"
        if not reference:
            bid, ask = book.bids.best, book.asks.best
            if bid is None or ask is None:
                return 0  # nothing to measure a price against yet
            reference = (bid.price + ask.price) // 2
            if (ask.price - bid.price) * PPM > band_ppm * reference:
                return 0  # a spread wider than the band has no meaningful mid
            what = "the mid price"
        width = reference * band_ppm // PPM
        low, high = reference - width, reference + width
        if order_type is MARKET:
            tick = book.tick_size
            if side is BUY:
                return high // tick * tick
            return -(-(-low // tick) * tick)
        if price < low or price > high:
            raise _Rejected(
                RISK_REJECTED,
                f"price {show(price)} is outside the price band: {book.symbol} accepts "
                f"{show(max(low, 0))} to {show(high)} ({percent(band_ppm)} % around "
                f"{what} {show(reference)})",
                "price",
                "price_band",
            )
        return 0

    def _check_position(
        self,
        user_id: int,
        book: OrderBook,
        assets: dict[str, Balance] | None,
        adding: int,
        field: str,
    ) -> None:
        """Refuse a buy that would take the position in the base asset (holding plus open
        buys) above the user's limit."""
        asset = book.base
        limit = self._user_limits.get((user_id, asset))
        if limit is None:
            limit = self._position_limits.get(asset)
            if limit is None:
                return
        held = assets.get(asset) if assets is not None else None
        position = 0 if held is None else held.available + held.locked + held.buying
        if position + adding > limit:
            raise _Rejected(
                RISK_REJECTED,
                f"position limit: buying {show(adding)} {asset} would take your {asset} "
                f"position (holdings plus open buys) to {show(position + adding)}, above "
                f"the limit of {show(limit)} {asset}",
                field,
                "position_limit",
            )

    def _breaker_trips(
        self, book: OrderBook, watch: PriceWatch, price: int, events: list[Event]
    ) -> bool:
        """Record a trade price; halt the market if its window now spans too much."""
        low, high = watch.record(self._now_ms, price)
        limits = book.limits
        move_ppm = limits.breaker_move_ppm
        if move_ppm is None or (high - low) * PPM <= move_ppm * low:
            return False
        window_s = limits.breaker_window_ms // 1000
        moved = (high - low) * PPM // low
        until = self._now_ms + limits.breaker_cooldown_ms
        book.status = HALTED
        book.halted_until = until
        watch.reset()
        reason = (
            f"circuit breaker: trades moved {percent(moved)} % within {window_s} s "
            f"({show(low)} to {show(high)}), more than {percent(move_ppm)} %"
        )
        events.append(MarketHalted(book.symbol, reason, until))
        events.append(
            RiskEventRaised(
                None,
                RiskEventType.TRADE,
                RiskSeverity.CRITICAL,
                f"{book.symbol} halted by its circuit breaker: trades moved {percent(moved)} % "
                f"within {window_s} s ({show(low)} to {show(high)}); trading resumes in "
                f"{limits.breaker_cooldown_ms // 1000} s or when an admin resumes it",
                None,
                book.symbol,
                "circuit_breaker",
                (
                    ("low", show(low)),
                    ("high", show(high)),
                    ("last_price", show(price)),
                    ("move_pct", percent(moved)),
                    ("threshold_pct", percent(move_ppm)),
                    ("window_seconds", window_s),
                    ("cooldown_seconds", limits.breaker_cooldown_ms // 1000),
                    ("resumes_at_ms", until),
                ),
            )
        )
        return True

    def _apply_limits(self, book: OrderBook, limits: MarketLimits) -> None:
        book.limits = limits
        if limits.breaker_move_ppm is None:
            book.watch = None
        elif book.watch is None or book.watch.window_ms != limits.breaker_window_ms:
            book.watch = PriceWatch(limits.breaker_window_ms)

    def _fillable(self, taker: Order, opposite: BookSide, limit_key: int) -> int:
        """How much of ``taker`` would fill now: stops at its owner's first resting order
        (self-trade prevention ends matching there) and, for a market BUY, at what the
        available quote pays for."""
        wanted = taker.remaining
        budget = taker.quote.available if taker.is_buy and taker.type is MARKET else -1
        lot = taker.book.lot_size
        filled = 0
        for level in opposite.in_priority():
            if level.key > limit_key:
                break
            price = level.price
            maker = level.head
            while maker is not None:
                if maker.user_id == taker.user_id:
                    return filled
                quantity = min(maker.remaining, wanted - filled)
                if budget >= 0:
                    affordable = budget * SCALE // price // lot * lot
                    if affordable < quantity:
                        return filled + affordable
                    budget -= price * quantity // SCALE
                filled += quantity
                if filled == wanted:
                    return filled
                maker = maker.next
        return filled

    def _match(self, taker: Order, opposite: BookSide, limit_key: int, events: list[Event]) -> bool:
        """Fill ``taker`` against ``opposite`` in price-time priority, at the makers' prices.

        Stops when the taker is filled, the book no longer crosses its limit, a market BUY
        cannot pay for another lot, or the next maker belongs to the taker's owner. Returns
        whether it stopped at the owner's order (self-trade prevention).
        """
        book = taker.book
        symbol = book.symbol
        fill = self._fill_buyer_taker if taker.is_buy else self._fill_seller_taker
        orders = self._orders
        user_orders = self._user_orders
        taker_user = taker.user_id
        market_buy = taker.is_buy and taker.type is MARKET
        makers_buy = not taker.is_buy
        watch = book.watch
        fok = taker.time_in_force is FOK
        lot = book.lot_size
        remaining = taker.remaining
        self_trade = out_of_funds = halted = False
        while remaining:
            level = opposite.best
            if level is None or level.key > limit_key:
                break
            price = level.price
            before = level.quantity
            maker = level.head
            while maker is not None:
                if maker.user_id == taker_user:
                    self_trade = True
                    break
                quantity = maker.remaining
                if quantity > remaining:
                    quantity = remaining
                if market_buy:
                    affordable = taker.quote.available * SCALE // price // lot * lot
                    if affordable < quantity:
                        out_of_funds = True
                        if not affordable:
                            break
                        quantity = affordable
                fill(taker, maker, price, quantity, events)
                remaining -= quantity
                level.quantity -= quantity
                maker.filled += quantity
                maker.remaining -= quantity
                if makers_buy:
                    maker.base.buying -= quantity
                book.last_price = price
                if watch is not None and self._breaker_trips(book, watch, price, events):
                    halted = not fok  # a FOK order still fills whole: it was promised
                following = maker.next
                if maker.remaining:
                    events.append(
                        OrderUpdated(maker.id, maker.user_id, symbol, maker.filled, PARTIAL)
                    )
                else:
                    # Filled: the maker is the head of the queue, so it leaves from the front.
                    level.head = following
                    if following is None:
                        level.tail = None
                    else:
                        following.prev = None
                    maker.next = maker.level = None
                    level.count -= 1
                    del orders[maker.id]
                    del user_orders[maker.user_id][maker.id]
                    events.append(
                        OrderUpdated(maker.id, maker.user_id, symbol, maker.filled, FILLED)
                    )
                if not remaining or out_of_funds or halted:
                    break
                maker = following
            if level.quantity != before:
                book.sequence += 1
                events.append(
                    BookLevelChanged(
                        symbol, opposite.side, price, level.quantity, level.count, book.sequence
                    )
                )
            if not level.count:
                opposite.drop(level)
            if self_trade or out_of_funds or halted:
                break
        taker.filled += taker.remaining - remaining
        taker.remaining = remaining
        return self_trade

    def _fill_buyer_taker(
        self, taker: Order, maker: Order, price: int, quantity: int, events: list[Event]
    ) -> None:
        """Settle one fill of an incoming BUY against a resting SELL.

        The buyer pays from its reservation at its limit price; paying the maker's lower
        price releases the difference in the same entry. A market BUY reserved nothing and
        pays from available. Each side's fee is taken from what it receives.
        """
        book = taker.book
        base, quote = book.base, book.quote
        trade_id = self._next_trade_id
        self._next_trade_id = trade_id + 1
        value = price * quantity // SCALE
        buyer, seller = taker.user_id, maker.user_id
        rates, default = self._user_rates, self._default_rates
        buyer_fee = -(-quantity * rates.get(buyer, default).taker_ppm // PPM)
        seller_fee = -(-value * rates.get(seller, default).maker_ppm // PPM)
        add = events.append
        add(
            TradeExecuted(
                trade_id, book.symbol, price, quantity, value, BUY, maker.id, taker.id,
                buyer, seller, taker.id, maker.id, buyer_fee, seller_fee,
            )
        )  # fmt: skip
        paid = taker.quote
        if taker.type is MARKET:
            paid.available -= value
            add(
                BalanceChanged(
                    buyer, quote, -value, 0, paid.available, paid.locked, TRADE, trade_id
                )
            )
        else:
            at_limit = taker.price * quantity // SCALE
            paid.locked -= at_limit
            paid.available += at_limit - value
            taker.reserved -= at_limit
            add(
                BalanceChanged(
                    buyer, quote, at_limit - value, -at_limit, paid.available, paid.locked,
                    TRADE, trade_id,
                )
            )  # fmt: skip
        got = taker.base
        got.available += quantity
        add(BalanceChanged(buyer, base, quantity, 0, got.available, got.locked, TRADE, trade_id))
        if buyer_fee:
            got.available -= buyer_fee
            add(
                BalanceChanged(buyer, base, -buyer_fee, 0, got.available, got.locked, FEE, trade_id)
            )
        sold = maker.base
        sold.locked -= quantity
        maker.reserved -= quantity
        add(
            BalanceChanged(seller, base, 0, -quantity, sold.available, sold.locked, TRADE, trade_id)
        )
        got = maker.quote
        got.available += value
        add(BalanceChanged(seller, quote, value, 0, got.available, got.locked, TRADE, trade_id))
        if seller_fee:
            got.available -= seller_fee
            add(
                BalanceChanged(
                    seller, quote, -seller_fee, 0, got.available, got.locked, FEE, trade_id
                )
            )
        self._collect_fees(book, buyer_fee, seller_fee, trade_id, events)

    def _fill_seller_taker(
        self, taker: Order, maker: Order, price: int, quantity: int, events: list[Event]
    ) -> None:
        """Settle one fill of an incoming SELL against a resting BUY (at the BUY's price)."""
        book = taker.book
        base, quote = book.base, book.quote
        trade_id = self._next_trade_id
        self._next_trade_id = trade_id + 1
        value = price * quantity // SCALE
        buyer, seller = maker.user_id, taker.user_id
        rates, default = self._user_rates, self._default_rates
        buyer_fee = -(-quantity * rates.get(buyer, default).maker_ppm // PPM)
        seller_fee = -(-value * rates.get(seller, default).taker_ppm // PPM)
        add = events.append
        add(
            TradeExecuted(
                trade_id, book.symbol, price, quantity, value, SELL, maker.id, taker.id,
                buyer, seller, maker.id, taker.id, buyer_fee, seller_fee,
            )
        )  # fmt: skip
        paid = maker.quote
        paid.locked -= value
        maker.reserved -= value
        add(BalanceChanged(buyer, quote, 0, -value, paid.available, paid.locked, TRADE, trade_id))
        got = maker.base
        got.available += quantity
        add(BalanceChanged(buyer, base, quantity, 0, got.available, got.locked, TRADE, trade_id))
        if buyer_fee:
            got.available -= buyer_fee
            add(
                BalanceChanged(buyer, base, -buyer_fee, 0, got.available, got.locked, FEE, trade_id)
            )
        sold = taker.base
        sold.locked -= quantity
        taker.reserved -= quantity
        add(
            BalanceChanged(seller, base, 0, -quantity, sold.available, sold.locked, TRADE, trade_id)
        )
        got = taker.quote
        got.available += value
        add(BalanceChanged(seller, quote, value, 0, got.available, got.locked, TRADE, trade_id))
        if seller_fee:
            got.available -= seller_fee
            add(
                BalanceChanged(
                    seller, quote, -seller_fee, 0, got.available, got.locked, FEE, trade_id
                )
            )
        self._collect_fees(book, buyer_fee, seller_fee, trade_id, events)

    def _collect_fees(
        self, book: OrderBook, buyer_fee: int, seller_fee: int, trade_id: int, events: list[Event]
    ) -> None:
        """Credit both fees of a trade to the fee account."""
        account = self._fee_account_id
        if buyer_fee:
            held = book.fee_base
            held.available += buyer_fee
            events.append(
                BalanceChanged(
                    account, book.base, buyer_fee, 0, held.available, held.locked, FEE, trade_id
                )
            )
        if seller_fee:
            held = book.fee_quote
            held.available += seller_fee
            events.append(
                BalanceChanged(
                    account, book.quote, seller_fee, 0, held.available, held.locked, FEE, trade_id
                )
            )

    def _settle_taker(self, order: Order, self_trade: bool, events: list[Event]) -> None:
        """After matching: report the fills, then rest the remainder or cancel it."""
        if order.filled:
            events.append(
                OrderUpdated(
                    order.id,
                    order.user_id,
                    order.book.symbol,
                    order.filled,
                    FILLED if not order.remaining else PARTIAL,
                )
            )
        if not order.remaining:
            return
        if self_trade:
            self._end_taker(order, CancelReason.SELF_TRADE, events)
            events.append(
                RiskEventRaised(
                    order.user_id,
                    RiskEventType.SUSPICIOUS_ACTIVITY,
                    RiskSeverity.LOW,
                    f"self-trade prevented: order {order.id} would have traded with an own "
                    f"resting order on {order.book.symbol}; its remainder was cancelled",
                    order.id,
                    order.book.symbol,
                )
            )
        elif order.book.status is HALTED:  # the circuit breaker stopped it mid-way
            self._end_taker(order, CancelReason.HALT, events)
        elif order.type is MARKET:
            self._end_taker(order, CancelReason.MARKET, events)
        elif order.time_in_force is not GTC:
            reason = CancelReason.IOC if order.time_in_force is IOC else CancelReason.FOK
            self._end_taker(order, reason, events)
        else:
            self._rest(order, events)

    def _rest(self, order: Order, events: list[Event]) -> None:
        book = order.book
        book_side = book.bids if order.is_buy else book.asks
        level = book_side.append(order)
        if order.is_buy:
            order.base.buying += order.remaining
        self._orders[order.id] = order
        user_orders = self._user_orders.get(order.user_id)
        if user_orders is None:
            user_orders = self._user_orders[order.user_id] = {}
        user_orders[order.id] = order
        book.sequence += 1
        events.append(
            BookLevelChanged(
                book.symbol, order.side, level.price, level.quantity, level.count, book.sequence
            )
        )

    def _end_taker(self, order: Order, reason: CancelReason, events: list[Event]) -> None:
        """Cancel what is left of an order that is not in the book."""
        events.append(
            OrderCancelled(order.id, order.user_id, order.book.symbol, order.filled, reason)
        )
        self._release(order, events)

    def _release(self, order: Order, events: list[Event]) -> None:
        reserved = order.reserved
        if not reserved:
            return
        held = order.quote if order.is_buy else order.base
        held.locked -= reserved
        held.available += reserved
        order.reserved = 0
        book = order.book
        events.append(
            BalanceChanged(
                order.user_id,
                book.quote if order.is_buy else book.base,
                reserved,
                -reserved,
                held.available,
                held.locked,
                ORDER_UNLOCK,
                order.id,
            )
        )

    def _unlink(self, order: Order, events: list[Event]) -> None:
        """Take a resting order out of the book (the dictionaries are the caller's)."""
        book = order.book
        book_side = book.bids if order.is_buy else book.asks
        if order.is_buy:
            order.base.buying -= order.remaining
        level = book_side.unlink(order)
        book.sequence += 1
        events.append(
            BookLevelChanged(
                book.symbol, order.side, level.price, level.quantity, level.count, book.sequence
            )
        )

    def _cancel_resting(self, order: Order, reason: CancelReason, events: list[Event]) -> None:
        """Cancel a resting order: release its reservation and take it out of the book."""
        book = order.book
        order_id, user_id, is_buy = order.id, order.user_id, order.is_buy
        events.append(OrderCancelled(order_id, user_id, book.symbol, order.filled, reason))
        reserved = order.reserved
        if reserved:
            held = order.quote if is_buy else order.base
            held.locked -= reserved
            held.available += reserved
            order.reserved = 0
            events.append(
                BalanceChanged(
                    user_id,
                    book.quote if is_buy else book.base,
                    reserved,
                    -reserved,
                    held.available,
                    held.locked,
                    ORDER_UNLOCK,
                    order_id,
                )
            )
        if is_buy:
            order.base.buying -= order.remaining
        level = (book.bids if is_buy else book.asks).unlink(order)
        book.sequence += 1
        events.append(
            BookLevelChanged(
                book.symbol, order.side, level.price, level.quantity, level.count, book.sequence
            )
        )
        del self._orders[order_id]
        del self._user_orders[user_id][order_id]

    # ------------------------------------------------------------------ amend / cancel

    def _open_order_of(self, user_id: int, order_id: object) -> Order:
        order = self._orders.get(order_id) if type(order_id) is int else None
        if order is not None and order.user_id == user_id:
            return order
        if order is None and type(order_id) is int and 0 < order_id < self._next_order_id:
            # Every id below the counter was accepted once; not open means closed.
            raise _Rejected(RejectCode.ORDER_NOT_OPEN, f"order {order_id} is not open", "id")
        raise _Rejected(RejectCode.NOT_FOUND, f"no open order {order_id!r}", "id")

    def _amend(self, cmd: AmendOrder) -> list[Event]:
        order = self._open_order_of(cmd.user_id, cmd.order_id)
        book = order.book
        if cmd.quantity is None and cmd.price is None:
            raise _Rejected(RejectCode.INVALID_INPUT, "give a new quantity and/or price", None)
        quantity = (
            order.quantity
            if cmd.quantity is None
            else _on_grid(cmd.quantity, book.lot_size, "quantity")
        )
        price = order.price if cmd.price is None else _on_grid(cmd.price, book.tick_size, "price")
        if book.status is HALTED:
            raise _Rejected(RejectCode.MARKET_HALTED, f"{book.symbol} is halted", "symbol")
        if self._suspended and order.user_id in self._suspended:
            raise _Rejected(
                RISK_REJECTED,
                "trading is suspended for this account; cancels still work",
                None,
                "trading_suspended",
            )
        if book.limits is not NO_LIMITS:
            self._check_limits(book, order.side, LIMIT, quantity, price, band=price != order.price)
        if quantity <= order.filled:
            raise _Rejected(
                RejectCode.INVALID_INPUT,
                f"quantity must exceed the filled quantity {show(order.filled)}",
                "quantity",
            )
        if price * quantity // SCALE < book.min_notional:
            raise _Rejected(
                RejectCode.INVALID_INPUT,
                f"order value is below the minimum notional {show(book.min_notional)}",
                "quantity",
            )
        remaining = quantity - order.filled
        is_buy = order.is_buy
        if is_buy and remaining > order.remaining and (self._position_limits or self._user_limits):
            self._check_position(
                order.user_id,
                book,
                self._balances.get(order.user_id),
                remaining - order.remaining,
                "quantity",
            )
        reserve = price * remaining // SCALE if is_buy else remaining
        delta = reserve - order.reserved
        held = order.quote if is_buy else order.base
        if delta > held.available:
            asset = book.quote if is_buy else book.base
            raise _Rejected(RejectCode.INSUFFICIENT_BALANCE, f"not enough {asset} available")
        opposite = book.asks if is_buy else book.bids
        limit_key = price if is_buy else -price
        best = opposite.best
        crosses = best is not None and best.key <= limit_key
        if crosses and order.post_only:
            raise _Rejected(
                RejectCode.POST_ONLY_WOULD_TAKE, "post-only order would take liquidity", "price"
            )

        events: list[Event] = []
        keeps_priority = price == order.price and quantity <= order.quantity
        if not keeps_priority:
            order.priority = self._next_order_id
            self._next_order_id += 1
        events.append(
            OrderAmended(
                order.id,
                order.user_id,
                book.symbol,
                quantity,
                price,
                reserve,
                order.priority,
                keeps_priority,
            )
        )
        if delta:
            held.available -= delta
            held.locked += delta
            order.reserved = reserve
            events.append(
                BalanceChanged(
                    order.user_id,
                    book.quote if is_buy else book.base,
                    -delta,
                    delta,
                    held.available,
                    held.locked,
                    ORDER_LOCK if delta > 0 else ORDER_UNLOCK,
                    order.id,
                )
            )
        if keeps_priority:
            level = order.level
            assert level is not None
            changed = remaining != order.remaining
            level.quantity += remaining - order.remaining
            if is_buy:
                order.base.buying += remaining - order.remaining
            order.quantity = quantity
            order.remaining = remaining
            if changed:
                book.sequence += 1
                events.append(
                    BookLevelChanged(
                        book.symbol,
                        order.side,
                        level.price,
                        level.quantity,
                        level.count,
                        book.sequence,
                    )
                )
            return events
        # Moves to the back of its (new) level: out of the book, then in like a new order.
        self._unlink(order, events)
        del self._orders[order.id]
        del self._user_orders[order.user_id][order.id]
        order.quantity = quantity
        order.remaining = remaining
        order.price = price
        self_trade = crosses and self._match(order, opposite, limit_key, events)
        self._settle_taker(order, self_trade, events)
        return events

    def _cancel(self, cmd: CancelOrder) -> list[Event]:
        order_id = cmd.order_id
        if cmd.client_order_id is None and order_id is not None:
            order = self._orders.get(order_id)
            if order is not None and order.user_id == cmd.user_id:
                events: list[Event] = []
                self._cancel_resting(order, CancelReason.USER, events)
                return events
        elif cmd.client_order_id is None or order_id is not None:
            raise _Rejected(
                RejectCode.INVALID_INPUT, "give exactly one of order_id and client_order_id", "id"
            )
        else:
            order_id = self._client_order_ids.get((cmd.user_id, cmd.client_order_id))
            if order_id is None:
                raise _Rejected(
                    RejectCode.NOT_FOUND,
                    f"no order with client order id {cmd.client_order_id!r}",
                    "client_order_id",
                )
        order = self._open_order_of(cmd.user_id, order_id)
        events = []
        self._cancel_resting(order, CancelReason.USER, events)
        return events

    def _cancel_all(self, cmd: CancelAllOrders) -> list[Event]:
        if cmd.symbol is not None and cmd.symbol not in self._books:
            raise _Rejected(RejectCode.UNKNOWN_SYMBOL, f"unknown market {cmd.symbol!r}", "symbol")
        events: list[Event] = []
        for order_id in sorted(self._user_orders.get(cmd.user_id, ())):
            order = self._orders[order_id]
            if cmd.symbol is None or order.book.symbol == cmd.symbol:
                self._cancel_resting(order, CancelReason.USER, events)
        return events

    # ------------------------------------------------------------------ money and admin

    def _checked_amount(self, user_id: int, asset: str, amount: int) -> None:
        if type(user_id) is not int:
            raise _Rejected(RejectCode.INVALID_INPUT, "user_id must be an integer", "user_id")
        if asset not in self._assets:
            raise _Rejected(RejectCode.INVALID_INPUT, f"unknown asset {asset!r}", "asset")
        _positive_int(amount, "amount")

    def _deposit(self, cmd: Deposit) -> list[Event]:
        self._checked_amount(cmd.user_id, cmd.asset, cmd.amount)
        held = self._supply.get(cmd.asset, 0)
        if held + cmd.amount > MAX_AMOUNT:
            raise _Rejected(
                RejectCode.RISK_REJECTED,
                f"the exchange cannot hold more than {show(MAX_AMOUNT)} {cmd.asset}",
                "amount",
            )
        self._supply[cmd.asset] = held + cmd.amount
        balance = self._accounts.get(cmd.user_id, cmd.asset)
        balance.available += cmd.amount
        return [
            BalanceChanged(
                cmd.user_id,
                cmd.asset,
                cmd.amount,
                0,
                balance.available,
                balance.locked,
                BalanceReason.DEPOSIT,
                None,
            )
        ]

    def _withdraw(self, cmd: Withdraw) -> list[Event]:
        self._checked_amount(cmd.user_id, cmd.asset, cmd.amount)
        if self._accounts.available(cmd.user_id, cmd.asset) < cmd.amount:
            raise _Rejected(
                RejectCode.INSUFFICIENT_BALANCE, f"not enough {cmd.asset} available", "amount"
            )
        balance = self._accounts.get(cmd.user_id, cmd.asset)
        balance.available -= cmd.amount
        self._supply[cmd.asset] -= cmd.amount
        return [
            BalanceChanged(
                cmd.user_id,
                cmd.asset,
                -cmd.amount,
                0,
                balance.available,
                balance.locked,
                BalanceReason.WITHDRAWAL,
                None,
            )
        ]

    def _book(self, symbol: str) -> OrderBook:
        book = self._books.get(symbol)
        if book is None:
            raise _Rejected(RejectCode.UNKNOWN_SYMBOL, f"unknown market {symbol!r}", "symbol")
        return book

    def _halt(self, cmd: HaltMarket) -> list[Event]:
        book = self._book(cmd.symbol)
        if book.status is HALTED and not book.halted_until:
            raise _Rejected(RejectCode.INVALID_INPUT, f"{book.symbol} is already halted", "symbol")
        # An admin's halt lasts until an admin resumes, a circuit breaker's halt included.
        book.status = HALTED
        book.halted_until = 0
        events: list[Event] = [MarketHalted(book.symbol, cmd.reason)]
        if cmd.cancel_orders:
            resting = [o for o in self._orders.values() if o.book is book]
            for order in sorted(resting, key=lambda o: o.id):
                self._cancel_resting(order, CancelReason.HALT, events)
        return events

    def _resume(self, cmd: ResumeMarket) -> list[Event]:
        book = self._book(cmd.symbol)
        if book.status is not HALTED:
            raise _Rejected(RejectCode.INVALID_INPUT, f"{book.symbol} is not halted", "symbol")
        book.status = TRADING
        book.halted_until = 0
        if book.watch is not None:
            book.watch.reset()
        return [MarketResumed(book.symbol)]

    def _tick(self, cmd: Tick) -> list[Event]:
        now = cmd.now_ms
        if type(now) is not int or now < 0:
            raise _Rejected(RejectCode.INVALID_INPUT, "now_ms must be a non-negative int", "now_ms")
        if now > self._now_ms:
            self._now_ms = now
        events: list[Event] = []
        for book in self._books.values():
            if book.status is HALTED and book.halted_until and book.halted_until <= self._now_ms:
                book.status = TRADING
                book.halted_until = 0
                if book.watch is not None:
                    book.watch.reset()
                events.append(MarketResumed(book.symbol, True))
        return events

    def _set_market_limits(self, cmd: SetMarketLimits) -> list[Event]:
        book = self._book(cmd.symbol)
        if not isinstance(cmd.limits, MarketLimits):
            raise _Rejected(RejectCode.INVALID_INPUT, "limits must be MarketLimits", "limits")
        self._apply_limits(book, cmd.limits)
        return [MarketLimitsChanged(book.symbol, cmd.limits)]

    def _set_suspension(self, cmd: SetTradingSuspension) -> list[Event]:
        if type(cmd.user_id) is not int:
            raise _Rejected(RejectCode.INVALID_INPUT, "user_id must be an integer", "user_id")
        if type(cmd.reason) is not str:
            raise _Rejected(RejectCode.INVALID_INPUT, "reason must be text", "reason")
        if cmd.suspended:
            self._suspended[cmd.user_id] = cmd.reason
        else:
            self._suspended.pop(cmd.user_id, None)
        return [TradingSuspensionChanged(cmd.user_id, bool(cmd.suspended), cmd.reason)]

    def _set_position_limit(self, cmd: SetPositionLimit) -> list[Event]:
        user_id, asset, limit = cmd.user_id, cmd.asset, cmd.max_position
        if user_id is not None and type(user_id) is not int:
            raise _Rejected(RejectCode.INVALID_INPUT, "user_id must be an integer", "user_id")
        if type(asset) is not str or asset not in self._assets:
            raise _Rejected(RejectCode.INVALID_INPUT, f"unknown asset {asset!r}", "asset")
        if limit is not None and (type(limit) is not int or not 0 <= limit <= MAX_AMOUNT):
            raise _Rejected(
                RejectCode.INVALID_INPUT,
                "max_position must be a non-negative amount",
                "maxPosition",
            )
        if user_id is None:
            if limit is None:
                self._position_limits.pop(asset, None)
            else:
                self._position_limits[asset] = limit
        elif limit is None:
            self._user_limits.pop((user_id, asset), None)
        else:
            self._user_limits[user_id, asset] = limit
        return [PositionLimitChanged(user_id, asset, limit)]

    def _set_fee_tier(self, cmd: SetFeeTier) -> list[Event]:
        rates = self._fee_tiers.get(cmd.tier) if type(cmd.tier) is int else None
        if rates is None:
            raise _Rejected(RejectCode.INVALID_INPUT, f"unknown fee tier {cmd.tier!r}", "tier")
        if type(cmd.user_id) is not int:
            raise _Rejected(RejectCode.INVALID_INPUT, "user_id must be an integer", "user_id")
        self._user_tiers[cmd.user_id] = cmd.tier
        self._user_rates[cmd.user_id] = rates
        return [FeeTierChanged(cmd.user_id, cmd.tier, rates.maker_ppm, rates.taker_ppm)]

    # ------------------------------------------------------------------ snapshot / restore

    def snapshot(self) -> EngineSnapshot:
        """Everything needed to rebuild this engine, as plain data (see ``engine.snapshot``)."""
        orders: list[RestingOrderState] = []
        for book in self._books.values():
            for book_side in (book.bids, book.asks):
                for level in book_side.in_priority():
                    orders.extend(_resting_state(order) for order in level.orders())
        return EngineSnapshot(
            markets=tuple(replace(book.spec, status=book.status) for book in self._books.values()),
            fee_account_id=self._fee_account_id,
            balances=tuple(
                BalanceState(user_id, asset, balance.available, balance.locked)
                for user_id, asset, balance in self._accounts.items()
                if balance.available or balance.locked
            ),
            orders=tuple(orders),
            fee_tiers=dict(self._fee_tiers),
            user_fee_tiers=dict(sorted(self._user_tiers.items())),
            client_order_ids=dict(sorted(self._client_order_ids.items())),
            next_order_id=self._next_order_id,
            next_trade_id=self._next_trade_id,
            book_sequences={symbol: book.sequence for symbol, book in self._books.items()},
            max_open_orders_per_user=self._max_open_orders,
            market_limits={
                symbol: book.limits
                for symbol, book in self._books.items()
                if book.limits is not NO_LIMITS
            },
            halted_until={
                symbol: book.halted_until
                for symbol, book in self._books.items()
                if book.status is HALTED and book.halted_until
            },
            last_prices={
                symbol: book.last_price for symbol, book in self._books.items() if book.last_price
            },
            position_limits=dict(sorted(self._position_limits.items())),
            user_position_limits=dict(sorted(self._user_limits.items())),
            suspended_users=dict(sorted(self._suspended.items())),
            now_ms=self._now_ms,
        )

    @classmethod
    def restore(cls, snapshot: EngineSnapshot) -> Engine:
        """Rebuild an engine from a snapshot; raises ``ValueError`` on inconsistent state."""
        engine = cls(
            snapshot.markets,
            snapshot.fee_account_id,
            snapshot.fee_tiers,
            max_open_orders_per_user=snapshot.max_open_orders_per_user,
            market_limits=snapshot.market_limits,
            position_limits=snapshot.position_limits,
        )
        for symbol, until in snapshot.halted_until.items():
            book = engine._books.get(symbol)
            if book is None or book.status is not HALTED:
                raise ValueError(f"{symbol} has a breaker halt but is not a halted market")
            book.halted_until = until
        for symbol, price in snapshot.last_prices.items():
            if symbol not in engine._books or price <= 0:
                raise ValueError(f"bad last price of {symbol}: {price}")
            engine._books[symbol].last_price = price
        engine._user_limits = dict(snapshot.user_position_limits)
        engine._suspended = dict(snapshot.suspended_users)
        engine._now_ms = snapshot.now_ms
        accounts = engine._accounts
        for held in snapshot.balances:
            if held.available < 0 or held.locked < 0:
                raise ValueError(f"negative balance: {held}")
            balance = accounts.get(held.user_id, held.asset)
            if balance.available or balance.locked:
                raise ValueError(f"balance given twice: {held.user_id} {held.asset}")
            balance.available = held.available
            balance.locked = held.locked
            supply = engine._supply.get(held.asset, 0) + held.available + held.locked
            if supply > MAX_AMOUNT:
                raise ValueError(f"more {held.asset} than an amount can hold")
            engine._supply[held.asset] = supply
        for user_id, tier in snapshot.user_fee_tiers.items():
            if tier not in engine._fee_tiers:
                raise ValueError(f"user {user_id} is on unknown fee tier {tier}")
            engine._user_tiers[user_id] = tier
            engine._user_rates[user_id] = engine._fee_tiers[tier]
        engine._client_order_ids = dict(snapshot.client_order_ids)

        reserved: dict[tuple[int, str], int] = {}
        highest = 0
        books = engine._books
        orders = engine._orders
        user_orders = engine._user_orders
        client_order_ids = engine._client_order_ids
        by_user = accounts.by_user
        for state in _in_priority(snapshot.orders):
            order_id, user_id, price = state.order_id, state.user_id, state.price
            quantity, filled = state.quantity, state.filled_quantity
            book = books.get(state.symbol)
            if book is None:
                raise ValueError(f"order {order_id} is on unknown market {state.symbol}")
            if order_id in orders:
                raise ValueError(f"order {order_id} given twice")
            if not (
                0 <= filled < quantity
                and quantity % book.lot_size == 0
                and filled % book.lot_size == 0
                and price > 0
                and price % book.tick_size == 0
            ):
                raise ValueError(f"order {order_id} is off the market grid: {state}")
            side = _SIDES.get(state.side)
            if side is None:
                raise ValueError(f"order {order_id} has no side: {state}")
            assets = by_user.get(user_id)
            if assets is None:
                assets = by_user[user_id] = {}
            base = assets.get(book.base)
            if base is None:
                base = assets[book.base] = Balance()
            quote = assets.get(book.quote)
            if quote is None:
                quote = assets[book.quote] = Balance()
            order = Order(
                order_id,
                user_id,
                book,
                side,
                LIMIT,
                GTC,
                price,
                quantity,
                state.post_only,
                state.client_order_id,
                state.priority,
                base,
                quote,
            )
            remaining = quantity - filled
            order.filled = filled
            order.remaining = remaining
            is_buy = side is BUY
            if is_buy:
                base.buying += remaining
            order.reserved = price * remaining // SCALE if is_buy else remaining
            key = (user_id, book.quote if is_buy else book.base)
            reserved[key] = reserved.get(key, 0) + order.reserved
            (book.bids if is_buy else book.asks).append(order)
            orders[order_id] = order
            mine = user_orders.get(user_id)
            if mine is None:
                mine = user_orders[user_id] = {}
            mine[order_id] = order
            if state.client_order_id is not None:
                client_order_ids[user_id, state.client_order_id] = order_id
            if order_id > highest:
                highest = order_id
            if order.priority > highest:
                highest = order.priority
        for user_id, asset, balance in accounts.items():
            if balance.locked != reserved.get((user_id, asset), 0):
                raise ValueError(
                    f"locked {asset} of user {user_id} is {balance.locked}, "
                    f"open orders reserve {reserved.get((user_id, asset), 0)}"
                )
        for book in engine._books.values():
            bid, ask = book.bids.best, book.asks.best
            if bid is not None and ask is not None and bid.price >= ask.price:
                raise ValueError(f"{book.symbol} would be crossed: {bid.price} >= {ask.price}")
            book.sequence = snapshot.book_sequences.get(book.symbol, 0)
        if snapshot.next_order_id <= highest:
            raise ValueError(f"next_order_id must exceed {highest}")
        engine._next_order_id = snapshot.next_order_id
        engine._next_trade_id = snapshot.next_trade_id
        return engine


def _in_priority(states: Sequence[RestingOrderState]) -> Sequence[RestingOrderState]:
    """The orders by (priority, id): as given when they already are (the worker reads them
    so), sorted otherwise."""
    previous_priority = previous_id = -1
    for state in states:
        priority, order_id = state.priority, state.order_id
        if priority < previous_priority or (
            priority == previous_priority and order_id < previous_id
        ):
            return sorted(states, key=_priority_key)
        previous_priority, previous_id = priority, order_id
    return states


def _priority_key(state: RestingOrderState) -> tuple[int, int]:
    return state.priority, state.order_id


def _resting_state(order: Order) -> RestingOrderState:
    return RestingOrderState(
        order.id,
        order.user_id,
        order.book.symbol,
        order.side,
        order.price,
        order.quantity,
        order.filled,
        order.priority,
        order.post_only,
        order.client_order_id,
    )
