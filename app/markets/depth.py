"""A market's book as an API process keeps it, and the depth views derived from it.

Pure: no Redis, no event loop. :class:`BookReplica` is the whole book (the worker's snapshot
plus its contiguous level changes); a :class:`DepthView` is the best ``depth`` levels a side
as one group of subscribers sees them. Each book change advances every view once and gives
a :class:`Frame`: the view's levels that changed, *including* levels that enter the view
when better ones leave it, so snapshot + frames always equals the top ``depth`` of the book.

A frame carries the sequence before and after it (``prev_sequence`` / ``sequence``; a change
outside a view gives that view no frame, so its sequences skip) and a CRC32 ``checksum`` of
the view after it. Frames of one view :func:`merge` into one (latest state per price), which
is how a slow subscriber is brought up to date without a queue.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any

from sortedcontainers import SortedDict

from app import wire
from app.markets.service import BookSnapshot, Level


class FrameKind(Enum):
    SNAPSHOT = "SNAPSHOT"
    """The view's levels when the subscriber joined."""
    DELTA = "DELTA"
    """Changed levels (quantity 0: gone) since ``prev_sequence``."""
    RESYNC = "RESYNC"
    """The server re-read the book (a lost message, a Redis reconnect): replace the view."""


class BookGap(Exception):
    """A level change is missing: the replica must be re-read."""


def checksum(bids: Sequence[Level], asks: Sequence[Level]) -> int:
    """CRC32 of the levels as OKX and Kraken books do it: ``price:quantity`` of the best bid,
    then of the best ask, then the second bid, the second ask, … (a side that runs out is
    skipped), joined by ``:``, each number as it is sent (no trailing zeros, no exponent);
    the CRC read as a signed 32-bit integer, so it fits a GraphQL ``Int``."""
    parts: list[str] = []
    for i in range(max(len(bids), len(asks))):
        for side in (bids, asks):
            if i < len(side):
                level = side[i]
                parts.append(
                    f"{wire.decimal_text(level.price)}:{wire.decimal_text(level.quantity)}"
                )
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


@dataclass(frozen=True, slots=True)
class Frame:
    """One update of a depth view. In a SNAPSHOT or RESYNC, ``bids``/``asks`` are the whole
    view; in a DELTA, the levels that changed (quantity 0: the level left the view)."""

    kind: FrameKind
    symbol: str
    depth: int
    sequence: int
    prev_sequence: int | None
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    checksum: int
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """For the layer that sends it: what it made of this frame once, for every subscriber."""

    @property
    def full(self) -> bool:
        return self.kind is not FrameKind.DELTA


def _overlay(
    base: Iterable[Level], changes: Iterable[Level], *, descending: bool, keep_zero: bool
) -> tuple[Level, ...]:
    levels = {level.price: level for level in base}
    for change in changes:
        levels[change.price] = change
    kept = (level for level in levels.values() if keep_zero or level.quantity)
    return tuple(sorted(kept, key=lambda level: level.price, reverse=descending))


def merge(first: Frame, then: Frame) -> Frame:
    """One frame that brings a subscriber from before ``first`` to after ``then`` (two
    consecutive frames of the same view)."""
    if then.full:
        # A subscriber that has not had its snapshot yet still gets a SNAPSHOT.
        kind = FrameKind.SNAPSHOT if first.kind is FrameKind.SNAPSHOT else then.kind
        return Frame(
            kind, then.symbol, then.depth, then.sequence, None, then.bids, then.asks, then.checksum
        )
    full = first.full
    return Frame(
        first.kind,
        then.symbol,
        then.depth,
        then.sequence,
        first.prev_sequence,
        _overlay(first.bids, then.bids, descending=True, keep_zero=not full),
        _overlay(first.asks, then.asks, descending=False, keep_zero=not full),
        then.checksum,
    )


class BookReplica:
    """The whole book of one market, kept by applying the worker's level changes in order."""

    def __init__(self, snapshot: BookSnapshot) -> None:
        self.symbol = snapshot.symbol
        self.sequence = snapshot.sequence
        self._bids: SortedDict = SortedDict(lambda price: -price)
        self._asks: SortedDict = SortedDict()
        for level in snapshot.bids:
            self._bids[level.price] = level
        for level in snapshot.asks:
            self._asks[level.price] = level

    def apply(self, changes: Sequence[wire.LevelChange]) -> bool:
        """Apply the changes not yet applied; whether any was. :class:`BookGap` if the first
        new one does not follow :attr:`sequence` (then nothing is applied)."""
        fresh = [change for change in changes if change.sequence > self.sequence]
        if not fresh:
            return False
        expected = self.sequence + 1
        for change in fresh:
            if change.sequence != expected:
                raise BookGap(f"{self.symbol}: expected {expected}, got {change.sequence}")
            expected += 1
        for change in fresh:
            side = self._bids if change.side is wire.Side.BUY else self._asks
            price = Decimal(change.price)
            quantity = Decimal(change.quantity)
            if quantity:
                side[price] = Level(price, quantity, change.orders)
            else:
                side.pop(price, None)
        self.sequence = fresh[-1].sequence
        return True

    def top(self, depth: int) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        """The best ``depth`` bids and asks, best first."""
        return (
            tuple(self._bids.values()[:depth]),
            tuple(self._asks.values()[:depth]),
        )


def _diff(before: Sequence[Level], after: Sequence[Level], descending: bool) -> tuple[Level, ...]:
    now = {level.price: level for level in after}
    changed = [Level(level.price, Decimal(0), 0) for level in before if level.price not in now]
    was = {level.price: level for level in before}
    changed.extend(level for level in after if was.get(level.price) != level)
    return tuple(sorted(changed, key=lambda level: level.price, reverse=descending))


class DepthView:
    """The best ``depth`` levels a side of a replica, as its subscribers last saw them."""

    def __init__(self, replica: BookReplica, depth: int) -> None:
        self.depth = depth
        self._current: Frame | None = None
        self._load(replica)

    def _load(self, replica: BookReplica) -> None:
        self.symbol = replica.symbol
        self.sequence = replica.sequence
        self.bids, self.asks = replica.top(self.depth)
        self.checksum = checksum(self.bids, self.asks)

    def whole(self, kind: FrameKind = FrameKind.SNAPSHOT) -> Frame:
        """The view as it stands, as a SNAPSHOT (or RESYNC) frame."""
        return Frame(
            kind, self.symbol, self.depth, self.sequence, None, self.bids, self.asks, self.checksum
        )

    def current(self) -> Frame:
        """The view as it stands as a RESYNC frame: one object per sequence, so that every
        subscriber that is behind gets the same one."""
        made = self._current
        if made is None or made.sequence != self.sequence:
            made = self._current = self.whole(FrameKind.RESYNC)
        return made

    def advance(self, replica: BookReplica) -> Frame | None:
        """Catch up with ``replica``; the frame for it, or None if the view did not change."""
        bids, asks = replica.top(self.depth)
        bid_changes = _diff(self.bids, bids, descending=True)
        ask_changes = _diff(self.asks, asks, descending=False)
        if not bid_changes and not ask_changes:
            return None
        prev = self.sequence
        self.sequence, self.bids, self.asks = replica.sequence, bids, asks
        self.checksum = checksum(bids, asks)
        return Frame(
            FrameKind.DELTA,
            self.symbol,
            self.depth,
            self.sequence,
            prev,
            bid_changes,
            ask_changes,
            self.checksum,
        )

    def reload(self, replica: BookReplica) -> Frame:
        """Start again from a re-read replica: the RESYNC frame for it."""
        self._load(replica)
        self._current = None
        return self.current()
