"""The wire: every message that crosses a process boundary, typed once.

The API processes, the CLI, the matching worker and the subscriptions all import this
module and nothing else to talk to each other (it imports neither ``graph`` nor
``workers``). Adding a command is adding one :class:`Struct` here, to :data:`Command`
(its handling is then the worker codec's and the engine's business).

- **Commands** travel on the Redis stream as one entry each (:class:`Envelope`): the
  command id, its ``kind`` (the struct's tag), the reply channel, and the payload, the
  command's JSON (the tag included).
- **Replies** come back on the submitting process's channel, one :class:`ReplyBatch` per
  channel per committed batch: a :class:`Reply` per command id. For a trading command it
  carries the order **as stored** and its fills as stored, so the API answers from it.
- **Events** are what the worker publishes after each commit: :class:`UserEvents` (order
  changes and fills, on a user's channel), :class:`TradesEvent` (a market's trades),
  :data:`BookMessage` (level deltas and status changes on a market's book channel) and
  :class:`RiskAlert`. :class:`BookLevel` is one price level of the Redis book cache.

Amounts travel as exact decimal strings (``"0.001"``, never a float, never an exponent),
formatted by :func:`amount_text` / :func:`decimal_text` and nothing else. Types and ranges
(BIGINT ids, lengths) are checked by msgspec as it decodes; what needs more than a type
(characters PostgreSQL can store, symbols, the amount grammar) is checked by the worker's
codec (``workers.matching.codec``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal, TypeAlias

import msgspec
from msgspec import Meta, Struct

from engine import enums
from engine.units import show

MAX_BATCH_ENTRIES: Final = 100
"""The most entries one ``place_batch`` or ``cancel_batch`` carries."""
MAX_BIGINT: Final = 2**63 - 1
MAX_AMOUNT_TEXT: Final = 40
"""No amount the record holds (DECIMAL(20, 8)) needs more characters than this."""
MAX_SYMBOL_LENGTH: Final = 20
MAX_ASSET_LENGTH: Final = 20
MAX_CLIENT_ORDER_ID_LENGTH: Final = 64
MAX_REASON_LENGTH: Final = 500
"""A halt reason (``markets.halt_reason`` is TEXT): long enough for an operator's sentence."""
MAX_TIER: Final = 2**31 - 1

# The engine's string enums are the wire's (in JSON, their values: "BUY").
Side = enums.Side
OrderType = enums.OrderType
TimeInForce = enums.TimeInForce
OrderStatus = enums.OrderStatus
CancelReason = enums.CancelReason
MarketStatus = enums.MarketStatus
RiskEventType = enums.RiskEventType
RiskSeverity = enums.RiskSeverity

# Field types. Ids are PostgreSQL BIGINTs; amounts are decimal strings; sides, types,
# statuses... are the engine's string enums (on the wire: their values, "BUY").
Id: TypeAlias = Annotated[int, Meta(ge=1, le=MAX_BIGINT)]
Amount: TypeAlias = Annotated[str, Meta(max_length=MAX_AMOUNT_TEXT)]
Symbol: TypeAlias = Annotated[str, Meta(max_length=MAX_SYMBOL_LENGTH)]
Asset: TypeAlias = Annotated[str, Meta(max_length=MAX_ASSET_LENGTH)]
ClientOrderId: TypeAlias = Annotated[str, Meta(max_length=MAX_CLIENT_ORDER_ID_LENGTH)]
KycStatus: TypeAlias = Literal["approved", "rejected", "pending"]


amount_text = show
"""Integer units (1e-8) as the wire's decimal string: ``5``, ``0.0001``, ``-2.5`` (the
engine's own, cached, formatter: one spelling everywhere)."""


def decimal_text(value: Decimal) -> str:
    """A ``Decimal`` as the wire's decimal string (no trailing zeros, no exponent)."""
    return format(value.normalize(), "f")


# Commands. Each is tagged with its kind; ``Envelope.kind`` repeats it for the worker.


class _Command(Struct, kw_only=True, tag_field="kind", forbid_unknown_fields=False):
    pass


class OrderEntry(Struct, kw_only=True):
    """One order to place: a ``place``'s fields but the user (also a ``place_batch`` entry)."""

    symbol: Symbol
    side: Side
    type: OrderType
    quantity: Amount
    price: Amount | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    client_order_id: ClientOrderId | None = None


class CancelEntry(Struct, kw_only=True):
    """One order to cancel, named by exactly one of ``order_id`` and ``client_order_id``."""

    order_id: Id | None = None
    client_order_id: ClientOrderId | None = None


class Place(OrderEntry, _Command, tag="place", kw_only=True):
    user_id: Id


class Amend(_Command, tag="amend", kw_only=True):
    """A new quantity and/or price for an open order (``None`` keeps it)."""

    user_id: Id
    order_id: Id
    quantity: Amount | None = None
    price: Amount | None = None


class Cancel(CancelEntry, _Command, tag="cancel", kw_only=True):
    user_id: Id


class CancelAll(_Command, tag="cancel_all", kw_only=True):
    user_id: Id
    symbol: Symbol | None = None


class Deposit(_Command, tag="deposit", kw_only=True):
    user_id: Id
    asset: Asset
    amount: Amount


class Withdraw(_Command, tag="withdraw", kw_only=True):
    user_id: Id
    asset: Asset
    amount: Amount


class Halt(_Command, tag="halt", kw_only=True):
    """Stop trading on a market; resting orders stay unless ``cancel_orders``."""

    symbol: Symbol
    reason: Annotated[str, Meta(max_length=MAX_REASON_LENGTH)] = ""
    cancel_orders: bool = False


class Resume(_Command, tag="resume", kw_only=True):
    symbol: Symbol


class SetFeeTier(_Command, tag="set_fee_tier", kw_only=True):
    """A user's fee tier. From an admin (``automatic`` false): pin ``tier`` (the override),
    or with ``tier`` None clear the pin (the tier stays until volume changes it). From the
    fee job (``automatic``): the tier the user's exact 30-day ``volume_30d`` earns, applied
    only if the tier is still ``expected_tier`` (what the job read) and no admin pinned it;
    the volume resets the worker's running one either way."""

    user_id: Id
    tier: Annotated[int, Meta(ge=1, le=MAX_TIER)] | None
    automatic: bool = False
    volume_30d: Amount | None = None
    expected_tier: Annotated[int, Meta(ge=1, le=MAX_TIER)] | None = None


class SetKyc(_Command, tag="set_kyc", kw_only=True):
    """A user's KYC decision: the worker refuses orders (KYC_REQUIRED) unless approved."""

    user_id: Id
    status: KycStatus


Percent: TypeAlias = Annotated[str, Meta(max_length=12)]
"""A percentage as decimal text, such as ``10`` or ``2.5`` (above 0, below 100)."""
MAX_WINDOW_SECONDS: Final = 86_400
MAX_COOLDOWN_SECONDS: Final = 7 * 86_400


class SetMarketLimits(_Command, tag="set_market_limits", kw_only=True):
    """A market's risk settings, all at once; None switches a check off."""

    symbol: Symbol
    max_order_quantity: Amount | None = None
    max_order_notional: Amount | None = None
    price_band_pct: Percent | None = None
    breaker_move_pct: Percent | None = None
    breaker_window_seconds: Annotated[int, Meta(ge=1, le=MAX_WINDOW_SECONDS)] = 60
    breaker_cooldown_seconds: Annotated[int, Meta(ge=1, le=MAX_COOLDOWN_SECONDS)] = 300


class SetTradingSuspension(_Command, tag="set_trading_suspension", kw_only=True):
    """Suspend (or reinstate) a user's trading: places and amends refused, cancels work."""

    user_id: Id
    suspended: bool
    reason: Annotated[str, Meta(max_length=MAX_REASON_LENGTH)] = ""


class SetPositionLimit(_Command, tag="set_position_limit", kw_only=True):
    """The largest position of an asset: the default (``user_id`` None) or one user's
    override; ``max_position`` None removes it."""

    user_id: Id | None
    asset: Asset
    max_position: Amount | None


class PlaceBatch(_Command, tag="place_batch", kw_only=True):
    """Up to MAX_BATCH_ENTRIES orders of one user; each entry succeeds or fails alone."""

    user_id: Id
    entries: Annotated[list[OrderEntry], Meta(max_length=MAX_BATCH_ENTRIES)]


class CancelBatch(_Command, tag="cancel_batch", kw_only=True):
    """Up to MAX_BATCH_ENTRIES cancels of one user; each entry succeeds or fails alone."""

    user_id: Id
    entries: Annotated[list[CancelEntry], Meta(max_length=MAX_BATCH_ENTRIES)]


Command: TypeAlias = (
    Place
    | Amend
    | Cancel
    | CancelAll
    | Deposit
    | Withdraw
    | Halt
    | Resume
    | SetFeeTier
    | SetKyc
    | PlaceBatch
    | CancelBatch
    | SetMarketLimits
    | SetTradingSuspension
    | SetPositionLimit
)
COMMAND_TYPES: Final[dict[str, type[Command]]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in (
        Place,
        Amend,
        Cancel,
        CancelAll,
        Deposit,
        Withdraw,
        Halt,
        Resume,
        SetFeeTier,
        SetKyc,
        PlaceBatch,
        CancelBatch,
        SetMarketLimits,
        SetTradingSuspension,
        SetPositionLimit,
    )
}
"""Every command type by its kind (the tag on the stream)."""
KINDS: Final = frozenset(COMMAND_TYPES)


def kind_of(command: Command) -> str:
    tag = type(command).__struct_config__.tag
    assert isinstance(tag, str)
    return tag


class Envelope(Struct, kw_only=True):
    """A command as one Redis stream entry: every field a string (stream fields are)."""

    id: str
    kind: str
    reply_to: str
    payload: str
    """The command's JSON."""

    def fields(self) -> list[str]:
        """id, kind, reply_to, payload: the order the bus's append script reads them in."""
        return [self.id, self.kind, self.reply_to, self.payload]


_encoder = msgspec.json.Encoder()
_command_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    kind: msgspec.json.Decoder(cls) for kind, cls in COMMAND_TYPES.items()
}


def envelope(command: Command, *, command_id: str, reply_to: str) -> Envelope:
    return Envelope(
        id=command_id,
        kind=kind_of(command),
        reply_to=reply_to,
        payload=_encoder.encode(command).decode(),
    )


def decode_command(kind: str, payload: str | bytes) -> Command:
    """The command of ``kind`` from its JSON payload (the tag may be left out).

    Raises ``KeyError`` for an unknown kind, ``msgspec.ValidationError`` (its message ends
    with the path of the field at fault, ``at `$.price```) or ``msgspec.DecodeError``.
    """
    return _command_decoders[kind].decode(payload)  # type: ignore[no-any-return]


# Replies.


class Error(Struct, kw_only=True):
    """A refusal: the engine's or worker's code, a message, the (snake_case) field at fault."""

    code: str
    message: str
    field: str | None = None


class StoredOrder(Struct, kw_only=True):
    """An ``orders`` row as committed, every column the API shows (not ``priority``)."""

    id: int
    user_id: int
    symbol: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    post_only: bool
    quantity: Amount
    price: Amount | None
    filled_quantity: Amount
    status: OrderStatus
    client_order_id: str | None
    cancel_reason: CancelReason | None
    created_at: datetime
    updated_at: datetime


class Trade(Struct, kw_only=True):
    """A ``trades`` row as committed, with what the engine knew of it (maker and taker
    orders, ``quote_quantity``). The buyer's fee is in the base asset, the seller's in the
    quote asset (:meth:`fee_asset`)."""

    id: int
    symbol: str
    price: Amount
    quantity: Amount
    quote_quantity: Amount
    taker_side: Side
    maker_order_id: int
    taker_order_id: int
    buyer_user_id: int
    seller_user_id: int
    buyer_order_id: int
    seller_order_id: int
    buyer_fee: Amount
    seller_fee: Amount
    executed_at: datetime

    def fee_asset(self, side: Side) -> str:
        base, _, quote = self.symbol.partition("-")
        return base if side is Side.BUY else quote


class BalanceRow(Struct, kw_only=True):
    """A ``balances`` row as committed (the answer to a deposit or withdrawal)."""

    user_id: int
    asset: str
    available: Amount
    locked: Amount


class Reply(Struct, kw_only=True):
    """What the worker answers to one command (or one entry of a batch).

    ``order`` is the order the command concerns as stored after it (placed, amended or
    cancelled) and ``fills`` the trades it made, as stored. A repeated ``clientOrderId``
    answers ``duplicate`` with the original's ``order_id`` and no ``order``: the worker
    does not keep closed orders (the API reads that one back). ``cancelled`` lists the ids
    a cancel cancelled; ``balance`` is a deposit's or withdrawal's new balance; ``symbol``
    the market a halt or resume concerns; ``entries`` a batch's replies, in input order.
    """

    ok: bool = True
    error: Error | None = None
    order_id: int | None = None
    order: StoredOrder | None = None
    fills: list[Trade] = []
    cancelled: list[int] = []
    balance: BalanceRow | None = None
    duplicate: bool = False
    symbol: str | None = None
    entries: list[Reply] = []


def refusal(code: str, message: str, field: str | None = None) -> Reply:
    return Reply(ok=False, error=Error(code=code, message=message, field=field))


class Answer(Struct, kw_only=True):
    """One command's reply, by command id. The worker sends a :class:`Reply` it built or,
    for a command it had already committed, the stored JSON as it is (``msgspec.Raw``)."""

    id: str
    result: Reply | msgspec.Raw


class ReplyBatch(Struct, kw_only=True):
    """One message on a reply channel: the answers of one committed batch."""

    replies: list[Answer]


class _RawAnswer(Struct):
    id: str
    result: msgspec.Raw


class _RawReplyBatch(Struct):
    replies: list[_RawAnswer]


_raw_replies = msgspec.json.Decoder(_RawReplyBatch)
_reply = msgspec.json.Decoder(Reply)


def encode(message: object) -> bytes:
    """Any wire struct (or a list of them, or a ``msgspec.Raw``) as JSON."""
    return _encoder.encode(message)


def split_replies(data: str | bytes) -> list[tuple[str, msgspec.Raw]]:
    """A reply channel message as (command id, undecoded reply): each waiter decodes its
    own, typed (:func:`decode_reply`) or as plain JSON."""
    return [(answer.id, answer.result) for answer in _raw_replies.decode(data).replies]


def decode_reply(data: str | bytes | msgspec.Raw) -> Reply:
    return _reply.decode(data)


# Events, published after each commit.


OrderChange: TypeAlias = Literal["accepted", "updated", "amended", "cancelled"]


class OrderEvent(Struct, kw_only=True, tag_field="type", tag="order"):
    """An order changed (``accepted``, ``updated`` by a fill, ``amended``, ``cancelled``);
    ``order`` is its row as now stored."""

    event: OrderChange
    order: StoredOrder


class FillEvent(Struct, kw_only=True, tag_field="type", tag="fill"):
    """A trade the user was on, and on which ``side``."""

    side: Side
    trade: Trade


class UserEvents(Struct, kw_only=True):
    """One message on a user's channel: that user's events of one committed batch."""

    user_id: int
    events: list[OrderEvent | FillEvent]


class TradesEvent(Struct, kw_only=True):
    """One message on a market's trades channel: its trades of one committed batch."""

    symbol: str
    trades: list[Trade]


class BookLevel(Struct, kw_only=True):
    """One price level: a member of the Redis book cache (score: the price in units)."""

    price: Amount
    quantity: Amount
    orders: int


class LevelChange(Struct, kw_only=True):
    """One level's new state; ``quantity`` 0 means the level is gone. ``sequence`` is
    contiguous per symbol."""

    sequence: int
    side: Side
    price: Amount
    quantity: Amount
    orders: int


class BookDelta(Struct, kw_only=True, tag_field="type", tag="delta"):
    symbol: str
    levels: list[LevelChange]


class MarketStatusChanged(Struct, kw_only=True, tag_field="type", tag="status"):
    """A market halted or resumed (on its book channel)."""

    symbol: str
    status: MarketStatus
    reason: str | None = None
    resumes_at: datetime | None = None
    """A circuit breaker's halt: when trading resumes by itself."""


BookMessage: TypeAlias = BookDelta | MarketStatusChanged
"""What a market's book channel carries."""


class RiskAlert(Struct, kw_only=True):
    """A risk event as stored (``id`` is its ``risk_events`` row)."""

    id: int | None
    user_id: int | None
    """None for an event about a market rather than an account (a circuit breaker)."""
    event_type: RiskEventType
    severity: RiskSeverity
    description: str
    order_id: int | None = None
    symbol: str | None = None
    rule: str | None = None
    """Which rule raised it (``risk_events.metadata.rule``): self_trade, circuit_breaker,
    price_band, position_limit, order_size, trading_suspended, wash_trading, wash_pair,
    spoofing, layering, cancel_to_fill, order_burst, large_withdrawal, failed_login,
    new_ip, login_locked."""


_user_events = msgspec.json.Decoder(UserEvents)
_trades_event = msgspec.json.Decoder(TradesEvent)
_book_message: msgspec.json.Decoder[BookMessage] = msgspec.json.Decoder(BookMessage)
_book_level = msgspec.json.Decoder(BookLevel)
_risk_alert = msgspec.json.Decoder(RiskAlert)


def decode_user_events(data: str | bytes) -> UserEvents:
    return _user_events.decode(data)


def decode_trades_event(data: str | bytes) -> TradesEvent:
    return _trades_event.decode(data)


def decode_book_message(data: str | bytes) -> BookMessage:
    return _book_message.decode(data)


def decode_book_level(data: str | bytes) -> BookLevel:
    return _book_level.decode(data)


def decode_risk_alert(data: str | bytes) -> RiskAlert:
    return _risk_alert.decode(data)


# Activity: the committed trading stream the manipulation detector reads (one entry per
# committed batch on ``Keys.activity_stream``), built by the worker from what the batch has.


class OrderPlaced(Struct, kw_only=True, tag_field="type", tag="accepted"):
    order_id: int
    user_id: int
    symbol: str
    side: Side
    order_type: OrderType
    quantity: Amount
    price: Amount | None
    at: float
    """Seconds since the epoch (the batch's time)."""


class OrderWithdrawn(Struct, kw_only=True, tag_field="type", tag="cancelled"):
    order_id: int
    user_id: int
    symbol: str
    reason: CancelReason
    filled: Amount
    at: float


class TradeDone(Struct, kw_only=True, tag_field="type", tag="trade"):
    trade_id: int
    symbol: str
    price: Amount
    quantity: Amount
    buyer_user_id: int
    seller_user_id: int
    buyer_order_id: int
    seller_order_id: int
    at: float


class SelfTradePrevented(Struct, kw_only=True, tag_field="type", tag="self_trade"):
    user_id: int
    order_id: int | None
    symbol: str | None
    at: float


class WithdrawalMade(Struct, kw_only=True, tag_field="type", tag="withdrawal"):
    user_id: int
    asset: str
    amount: Amount
    at: float


ActivityItem: TypeAlias = (
    OrderPlaced | OrderWithdrawn | TradeDone | SelfTradePrevented | WithdrawalMade
)


class Activity(Struct, kw_only=True):
    """One committed batch's trading activity (the ``data`` field of a stream entry)."""

    items: list[ActivityItem]


_activity = msgspec.json.Decoder(Activity)


def decode_activity(data: str | bytes) -> Activity:
    return _activity.decode(data)
