"""Depth views against a naive model of the book, over random level changes: a client that
applies SNAPSHOT + DELTAs (taken one by one, or merged as a slow client gets them) always
holds the book's best N levels, with the checksum computed independently (tests/support)."""

from __future__ import annotations

import asyncio
import zlib
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from app import wire
from app.markets.depth import BookGap, BookReplica, DepthView, Frame, FrameKind, checksum, merge
from app.markets.feed import Mailbox
from app.markets.service import BookSnapshot, Level
from tests.support.books import BookCopy, book_checksum

PRICES = [Decimal(p) for p in ("99.5", "99.9", "100", "100.1", "100.25", "101", "102.5", "110")]


def as_update(frame: Frame) -> dict[str, object]:
    """The frame as the API sends it (amounts as the wire writes them)."""

    def side(levels: tuple[Level, ...]) -> list[dict[str, object]]:
        return [
            {
                "price": wire.decimal_text(level.price),
                "quantity": wire.decimal_text(level.quantity),
                "orders": level.orders,
            }
            for level in levels
        ]

    return {
        "type": frame.kind.value,
        "sequence": frame.sequence,
        "prevSequence": frame.prev_sequence,
        "depth": frame.depth,
        "checksum": frame.checksum,
        "bids": side(frame.bids),
        "asks": side(frame.asks),
    }


def naive_top(book: dict[str, dict[Decimal, Level]], depth: int) -> dict[str, list[object]]:
    bids = sorted(book["bids"].values(), key=lambda level: -level.price)[:depth]
    asks = sorted(book["asks"].values(), key=lambda level: level.price)[:depth]
    return {
        name: [
            {
                "price": wire.decimal_text(level.price),
                "quantity": wire.decimal_text(level.quantity),
                "orders": level.orders,
            }
            for level in levels
        ]
        for name, levels in (("bids", bids), ("asks", asks))
    }


change = st.tuples(
    st.booleans(),  # bid?
    st.sampled_from(PRICES),
    st.sampled_from([Decimal(0), Decimal(0), Decimal("0.5"), Decimal("1.25"), Decimal("3")]),
    st.integers(1, 4),
)


@settings(max_examples=150, deadline=None)
@given(
    initial=st.lists(change, max_size=8),
    batches=st.lists(st.lists(change, min_size=1, max_size=4), min_size=1, max_size=25),
    depths=st.lists(st.integers(1, 5), min_size=1, max_size=3, unique=True),
    taken=st.lists(st.booleans(), min_size=25, max_size=25),
)
def test_views_follow_the_book_through_random_changes(
    initial: list[tuple[bool, Decimal, Decimal, int]],
    batches: list[list[tuple[bool, Decimal, Decimal, int]]],
    depths: list[int],
    taken: list[bool],
) -> None:
    book: dict[str, dict[Decimal, Level]] = {"bids": {}, "asks": {}}
    for bid, price, quantity, orders in initial:
        if quantity:
            book["bids" if bid else "asks"][price] = Level(price, quantity, orders)
    snapshot = BookSnapshot(
        "BTC-USDT",
        7,
        sorted(book["bids"].values(), key=lambda level: -level.price),
        sorted(book["asks"].values(), key=lambda level: level.price),
    )
    replica = BookReplica(snapshot)
    views = {depth: DepthView(replica, depth) for depth in depths}
    prompt = {depth: BookCopy() for depth in depths}  # takes every frame at once
    slow = {depth: BookCopy() for depth in depths}  # takes a merged frame now and then
    pending: dict[int, Frame | None] = {}
    for depth, view in views.items():
        prompt[depth].apply(as_update(view.whole()))
        pending[depth] = view.whole()

    sequence = snapshot.sequence
    for step, batch in enumerate(batches):
        changes = []
        for bid, price, quantity, orders in batch:
            sequence += 1
            side = "bids" if bid else "asks"
            changes.append(
                wire.LevelChange(
                    sequence=sequence,
                    side=wire.Side.BUY if bid else wire.Side.SELL,
                    price=wire.decimal_text(price),
                    quantity=wire.decimal_text(quantity),
                    orders=orders if quantity else 0,
                )
            )
            if quantity:
                book[side][price] = Level(price, quantity, orders)
            else:
                book[side].pop(price, None)
        assert replica.apply(changes)
        assert not replica.apply(changes)  # a repeated message changes nothing
        for depth, view in views.items():
            frame = view.advance(replica)
            expected = naive_top(book, depth)
            if frame is None:
                assert prompt[depth].equals(expected)  # nothing in the view changed
                continue
            assert frame.kind is FrameKind.DELTA
            prompt[depth].apply(as_update(frame))
            assert prompt[depth].equals(expected)
            before = pending[depth]
            pending[depth] = frame if before is None else merge(before, frame)
            if taken[step]:
                merged = pending[depth]
                assert merged is not None
                slow[depth].apply(as_update(merged))
                pending[depth] = None
    for depth in depths:
        last = pending[depth]
        if last is not None:
            slow[depth].apply(as_update(last))
        final = naive_top(book, depth)
        assert slow[depth].equals(final)
        assert slow[depth].sequence == prompt[depth].sequence == views[depth].sequence


def test_a_level_taken_brings_the_next_one_into_view() -> None:
    """The issue's defect: six asks, a depth-3 view, the best two taken whole."""
    asks = [Level(Decimal(100 + i), Decimal(1), 1) for i in range(6)]
    replica = BookReplica(BookSnapshot("BTC-USDT", 10, [], asks))
    view = DepthView(replica, 3)
    taken = [
        wire.LevelChange(
            sequence=11 + i, side=wire.Side.SELL, price=str(100 + i), quantity="0", orders=0
        )
        for i in range(2)
    ]
    replica.apply(taken)
    frame = view.advance(replica)
    assert frame is not None
    assert (frame.prev_sequence, frame.sequence) == (10, 12)
    assert [(level.price, level.quantity) for level in frame.asks] == [
        (Decimal(100), Decimal(0)),
        (Decimal(101), Decimal(0)),
        (Decimal(103), Decimal(1)),
        (Decimal(104), Decimal(1)),
    ]
    assert [level.price for level in view.asks] == [Decimal(102), Decimal(103), Decimal(104)]


def test_a_gap_is_refused_and_changes_nothing() -> None:
    replica = BookReplica(BookSnapshot("BTC-USDT", 3, [], []))
    change = wire.LevelChange(sequence=5, side=wire.Side.BUY, price="1", quantity="1", orders=1)
    try:
        replica.apply([change])
    except BookGap:
        pass
    else:
        raise AssertionError("a gap was applied")
    assert replica.sequence == 3 and replica.top(5) == ((), ())


def test_checksum_matches_a_published_example_and_the_independent_one() -> None:
    # The text is "100:1.5:101:2:99.5:0.25": best bid, best ask, second bid.
    bids = [Level(Decimal("100"), Decimal("1.50"), 1), Level(Decimal("99.5"), Decimal("0.25"), 2)]
    asks = [Level(Decimal("101.0"), Decimal("2"), 1)]
    expected = zlib.crc32(b"100:1.5:101:2:99.5:0.25")
    expected = expected - 2**32 if expected >= 2**31 else expected
    assert checksum(bids, asks) == expected
    as_text = [
        {"price": wire.decimal_text(level.price), "quantity": wire.decimal_text(level.quantity)}
        for level in bids
    ]
    ask_text = [{"price": "101.0", "quantity": "2"}]
    assert book_checksum(as_text, ask_text) == expected
    assert checksum([], []) == 0


def test_a_subscriber_behind_gets_the_shared_whole_view() -> None:
    """Two subscribers: one takes every frame, the other none; the one behind is sent the
    view as it stands, the same RESYNC object as any other subscriber behind then."""

    async def scenario() -> None:
        replica = BookReplica(BookSnapshot("BTC-USDT", 0, [], []))
        view = DepthView(replica, 2)
        prompt, behind, also_behind = Mailbox(), Mailbox(), Mailbox()
        for mailbox in (prompt, behind, also_behind):
            mailbox.put(view.whole())
        for mailbox in (prompt, behind, also_behind):
            assert (await mailbox.get()).kind is FrameKind.SNAPSHOT
        copy = BookCopy()
        copy.apply(as_update(view.whole()))
        for sequence, price in enumerate(("100", "101", "102"), start=1):
            replica.apply(
                [
                    wire.LevelChange(
                        sequence=sequence, side=wire.Side.BUY, price=price, quantity="1", orders=1
                    )
                ]
            )
            frame = view.advance(replica)
            assert frame is not None
            for mailbox in (prompt, behind, also_behind):
                mailbox.put(frame, view.current)
            taken = await prompt.get()
            assert taken is frame and taken.kind is FrameKind.DELTA
            copy.apply(as_update(taken))
        late, also_late = await behind.get(), await also_behind.get()
        assert late is also_late and late.kind is FrameKind.RESYNC
        assert (late.sequence, late.checksum) == (3, view.checksum)
        assert behind.caught_up == 2
        resynced = BookCopy()
        resynced.apply(as_update(late))
        assert resynced.side("bids") == copy.side("bids")
        assert [level["price"] for level in copy.side("bids")] == ["102", "101"]

    asyncio.run(scenario())
