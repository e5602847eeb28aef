"""The typed protocol: every command, reply and event survives its trip over the wire, and
every command reaches the engine as what it says (property-based)."""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import wire
from engine import (
    AmendOrder,
    CancelAllOrders,
    CancelOrder,
    Deposit,
    HaltMarket,
    PlaceOrder,
    ResumeMarket,
    SetFeeTier,
    Withdraw,
    to_units,
)
from workers.matching import codec

ids = st.integers(1, wire.MAX_BIGINT)
units = st.integers(1, 10**20 - 1)
amounts = units.map(wire.amount_text)
symbols = st.from_regex(r"[A-Z0-9]{1,9}-[A-Z0-9]{1,10}", fullmatch=True)
assets = st.from_regex(r"[A-Z0-9]{1,20}", fullmatch=True)
client_order_ids = st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True)
texts = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
times = st.datetimes(timezones=st.just(UTC))
sides = st.sampled_from(wire.Side)

order_entries = st.builds(
    wire.OrderEntry,
    symbol=symbols,
    side=sides,
    type=st.sampled_from(wire.OrderType),
    quantity=amounts,
    price=st.none() | amounts,
    time_in_force=st.sampled_from(wire.TimeInForce),
    post_only=st.booleans(),
    client_order_id=st.none() | client_order_ids,
)
cancel_entries = st.builds(
    wire.CancelEntry, order_id=st.none() | ids, client_order_id=st.none() | client_order_ids
)
places = st.builds(
    lambda user_id, entry: wire.Place(user_id=user_id, **msgspec.structs.asdict(entry)),
    ids,
    order_entries,
)
cancels = st.builds(
    lambda user_id, entry: wire.Cancel(user_id=user_id, **msgspec.structs.asdict(entry)),
    ids,
    cancel_entries,
)
commands: st.SearchStrategy[wire.Command] = st.one_of(
    places,
    st.builds(
        wire.Amend,
        user_id=ids,
        order_id=ids,
        quantity=st.none() | amounts,
        price=st.none() | amounts,
    ),
    cancels,
    st.builds(wire.CancelAll, user_id=ids, symbol=st.none() | symbols),
    st.builds(wire.Deposit, user_id=ids, asset=assets, amount=amounts),
    st.builds(wire.Withdraw, user_id=ids, asset=assets, amount=amounts),
    st.builds(
        wire.Halt,
        symbol=symbols,
        reason=texts.filter(lambda t: len(t) <= wire.MAX_REASON_LENGTH),
        cancel_orders=st.booleans(),
    ),
    st.builds(wire.Resume, symbol=symbols),
    st.builds(wire.SetFeeTier, user_id=ids, tier=st.integers(1, wire.MAX_TIER)),
    st.builds(
        wire.SetKyc, user_id=ids, status=st.sampled_from(["approved", "rejected", "pending"])
    ),
    st.builds(
        wire.PlaceBatch,
        user_id=ids,
        entries=st.lists(order_entries, max_size=wire.MAX_BATCH_ENTRIES // 10),
    ),
    st.builds(
        wire.CancelBatch,
        user_id=ids,
        entries=st.lists(cancel_entries, max_size=wire.MAX_BATCH_ENTRIES // 10),
    ),
)

stored_orders = st.builds(
    wire.StoredOrder,
    id=ids,
    user_id=ids,
    symbol=symbols,
    side=sides,
    type=st.sampled_from(wire.OrderType),
    time_in_force=st.sampled_from(wire.TimeInForce),
    post_only=st.booleans(),
    quantity=amounts,
    price=st.none() | amounts,
    filled_quantity=amounts,
    status=st.sampled_from(wire.OrderStatus),
    client_order_id=st.none() | client_order_ids,
    cancel_reason=st.none() | st.sampled_from(wire.CancelReason),
    created_at=times,
    updated_at=times,
)
trades = st.builds(
    wire.Trade,
    id=ids,
    symbol=symbols,
    price=amounts,
    quantity=amounts,
    quote_quantity=amounts,
    taker_side=sides,
    maker_order_id=ids,
    taker_order_id=ids,
    buyer_user_id=ids,
    seller_user_id=ids,
    buyer_order_id=ids,
    seller_order_id=ids,
    buyer_fee=amounts,
    seller_fee=amounts,
    executed_at=times,
)
errors = st.builds(
    wire.Error, code=st.sampled_from(["INVALID_INPUT", "INTERNAL"]), message=texts, field=st.none()
)


def _reply(entries: st.SearchStrategy[list[wire.Reply]]) -> st.SearchStrategy[wire.Reply]:
    return st.builds(
        wire.Reply,
        ok=st.booleans(),
        error=st.none() | errors,
        order_id=st.none() | ids,
        order=st.none() | stored_orders,
        fills=st.lists(trades, max_size=3),
        cancelled=st.lists(ids, max_size=3),
        balance=st.none()
        | st.builds(wire.BalanceRow, user_id=ids, asset=assets, available=amounts, locked=amounts),
        duplicate=st.booleans(),
        symbol=st.none() | symbols,
        entries=entries,
    )


replies = _reply(st.lists(_reply(st.just([])), max_size=3))
level_changes = st.builds(
    wire.LevelChange,
    sequence=ids,
    side=sides,
    price=amounts,
    quantity=amounts,
    orders=st.integers(0, 10**6),
)
events = st.one_of(
    st.builds(
        wire.UserEvents,
        user_id=ids,
        events=st.lists(
            st.builds(
                wire.OrderEvent,
                event=st.sampled_from(["accepted", "updated", "amended", "cancelled"]),
                order=stored_orders,
            )
            | st.builds(wire.FillEvent, side=sides, trade=trades),
            max_size=4,
        ),
    ),
    st.builds(wire.TradesEvent, symbol=symbols, trades=st.lists(trades, max_size=3)),
    st.builds(wire.BookDelta, symbol=symbols, levels=st.lists(level_changes, max_size=3)),
    st.builds(
        wire.MarketStatusChanged,
        symbol=symbols,
        status=st.sampled_from(wire.MarketStatus),
        reason=st.none() | texts,
    ),
    st.builds(
        wire.RiskAlert,
        id=st.none() | ids,
        user_id=ids,
        event_type=st.sampled_from(wire.RiskEventType),
        severity=st.sampled_from(wire.RiskSeverity),
        description=texts,
        order_id=st.none() | ids,
        symbol=st.none() | symbols,
    ),
    st.builds(wire.BookLevel, price=amounts, quantity=amounts, orders=st.integers(0, 10**6)),
)
DECODERS: dict[type[Any], Any] = {
    wire.UserEvents: wire.decode_user_events,
    wire.TradesEvent: wire.decode_trades_event,
    wire.BookDelta: wire.decode_book_message,
    wire.MarketStatusChanged: wire.decode_book_message,
    wire.RiskAlert: wire.decode_risk_alert,
    wire.BookLevel: wire.decode_book_level,
}


@given(commands, st.from_regex(r"[0-9a-f]{1,64}", fullmatch=True))
def test_every_command_round_trips_through_its_stream_entry(
    command: wire.Command, command_id: str
) -> None:
    entry = wire.envelope(command, command_id=command_id, reply_to="replies:p")
    command_id_, kind, reply_to, payload = entry.fields()
    assert (command_id_, kind, reply_to) == (command_id, wire.kind_of(command), "replies:p")
    assert wire.decode_command(kind, payload) == command
    assert codec.read(kind, payload) == command


def units_of(amount: str | None) -> int | None:
    return None if amount is None else to_units(amount)


@given(commands)
def test_every_command_the_engine_runs_reaches_it_as_it_was_sent(command: wire.Command) -> None:
    entry = wire.envelope(command, command_id="c", reply_to="r")
    if isinstance(command, wire.SetKyc | wire.PlaceBatch | wire.CancelBatch):
        return  # not engine commands: the worker handles them itself
    expected: object
    match command:
        case wire.Place():
            expected = PlaceOrder(
                command.user_id,
                command.symbol,
                command.side,
                command.type,
                to_units(command.quantity),
                units_of(command.price),
                command.time_in_force,
                command.post_only,
                command.client_order_id,
            )
        case wire.Amend():
            expected = AmendOrder(
                command.user_id,
                command.order_id,
                units_of(command.quantity),
                units_of(command.price),
            )
        case wire.Cancel():
            expected = CancelOrder(command.user_id, command.order_id, command.client_order_id)
        case wire.CancelAll():
            expected = CancelAllOrders(command.user_id, command.symbol)
        case wire.Deposit():
            expected = Deposit(command.user_id, command.asset, to_units(command.amount))
        case wire.Withdraw():
            expected = Withdraw(command.user_id, command.asset, to_units(command.amount))
        case wire.Halt():
            expected = HaltMarket(command.symbol, command.reason, command.cancel_orders)
        case wire.Resume():
            expected = ResumeMarket(command.symbol)
        case wire.SetFeeTier():
            assert command.tier is not None  # an admin's pin (the strategy draws no other)
            expected = SetFeeTier(command.user_id, command.tier)
    assert codec.decode(entry.kind, entry.payload) == expected


@given(places, st.sampled_from(["user_id", "symbol", "side", "quantity", "price", "post_only"]))
def test_a_field_of_the_wrong_type_is_refused_by_name(place: wire.Place, field: str) -> None:
    payload = msgspec.json.decode(wire.encode(place))
    payload[field] = [1.5]  # no field of a command is a list of floats
    with pytest.raises(codec.BadCommand) as refusal:
        codec.decode("place", msgspec.json.encode(payload))
    assert refusal.value.field == field


@given(st.lists(st.tuples(st.from_regex(r"[0-9a-z-]{1,64}", fullmatch=True), replies), max_size=4))
def test_replies_round_trip_through_a_reply_batch(answers: list[tuple[str, wire.Reply]]) -> None:
    message = wire.encode(
        wire.ReplyBatch(replies=[wire.Answer(id=i, result=reply) for i, reply in answers])
    )
    split = wire.split_replies(message)
    assert [(i, wire.decode_reply(raw)) for i, raw in split] == answers
    # A stored reply (processed_commands' JSON) is passed on as it is, undecoded.
    replayed = wire.encode(
        wire.ReplyBatch(
            replies=[wire.Answer(id=i, result=msgspec.Raw(wire.encode(r))) for i, r in answers]
        )
    )
    assert [(i, wire.decode_reply(raw)) for i, raw in wire.split_replies(replayed)] == answers


@given(events)
def test_every_event_round_trips(event: Any) -> None:
    assert DECODERS[type(event)](wire.encode(event)) == event


def test_a_batch_holds_at_most_max_batch_entries() -> None:
    entry = {"symbol": "BTC-USDT", "side": "BUY", "type": "MARKET", "quantity": "1"}
    full = {"user_id": 1, "entries": [entry] * wire.MAX_BATCH_ENTRIES}
    assert len(codec.read("place_batch", msgspec.json.encode(full)).entries) == 100  # type: ignore[union-attr]
    over = {"user_id": 1, "entries": [entry] * (wire.MAX_BATCH_ENTRIES + 1)}
    with pytest.raises(codec.BadCommand) as refusal:
        codec.read("place_batch", msgspec.json.encode(over))
    assert refusal.value.field == "entries"
    cancels = {"user_id": 1, "entries": [{"order_id": 1}] * (wire.MAX_BATCH_ENTRIES + 1)}
    with pytest.raises(codec.BadCommand) as refusal:
        codec.read("cancel_batch", msgspec.json.encode(cancels))
    assert refusal.value.field == "entries"


def test_amounts_have_one_spelling() -> None:

    assert [wire.amount_text(u) for u in (500_000_000, 10_000, 1, 0)] == [
        "5",
        "0.0001",
        "0.00000001",
        "0",
    ]
    assert [wire.decimal_text(Decimal(t)) for t in ("5.00000000", "1E+2", "0.00010")] == [
        "5",
        "100",
        "0.0001",
    ]
