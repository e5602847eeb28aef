"""One book feed per subscribed market per API process, feeding every depth view of it.

The first ``orderBook`` subscriber of a market starts its :class:`BookFeed`: it subscribes to
the market's book channel, reads the whole book from the worker's Redis cache and keeps a
:class:`~app.markets.depth.BookReplica`. Each message on the channel is decoded once, applied
once, and advances each :class:`~app.markets.depth.DepthView` (one per distinct depth) once;
the resulting frame, the same object for every subscriber of that view, goes to each
subscriber's :class:`Mailbox`. A mailbox holds at most one frame: a subscriber that has not
taken the last one gets it merged with the next (latest state per price, the sequence range
widened), so a slow client is brought up to date, never queued without bound, and never
slows the others.

A sequence gap, a Redis reconnect (:data:`~app.kit.pubsub.GAP`) or a feed that fell behind
(:data:`~app.kit.pubsub.OVERFLOW`) re-reads the book and sends every view a RESYNC. The last
subscriber of a market to leave stops its feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import msgspec

from app import wire
from app.kit.pubsub import GAP, OVERFLOW, BoundedBroadcast, when_redis_answers
from app.markets.depth import BookGap, BookReplica, DepthView, Frame, FrameKind, merge
from app.markets.service import BookSnapshot

log = logging.getLogger(__name__)


class Mailbox:
    """A subscriber's next frame: put never waits. A subscriber that has not taken its last
    frame when the next comes is behind: it gets the view as it stands instead, as a RESYNC
    frame that every subscriber behind at that moment shares (one execution, one JSON)."""

    def __init__(self) -> None:
        self._frame: Frame | None = None
        self._ready = asyncio.Event()
        self.caught_up = 0
        """How many times this subscriber was behind and sent the whole view instead."""

    def put(self, frame: Frame, current: Callable[[], Frame] | None = None) -> None:
        """``frame`` next, or, if one is still waiting, ``current()`` (the whole view)."""
        waiting = self._frame
        if waiting is None:
            self._frame = frame
        elif waiting.kind is FrameKind.SNAPSHOT:
            self._frame = merge(waiting, frame)  # its first message: still a SNAPSHOT
        elif frame.full or current is None:
            self._frame = merge(waiting, frame)
        else:
            self._frame = current()
            self.caught_up += 1
        self._ready.set()

    async def get(self) -> Frame:
        await self._ready.wait()
        self._ready.clear()
        frame, self._frame = self._frame, None
        assert frame is not None
        return frame


class _View:
    def __init__(self, view: DepthView) -> None:
        self.view = view
        self.mailboxes: set[Mailbox] = set()


class BookFeed:
    """The replica of one market and its views, kept by one task."""

    def __init__(
        self,
        symbol: str,
        channel: str,
        broadcast: BoundedBroadcast,
        read_book: Callable[[str], Awaitable[BookSnapshot]],
    ) -> None:
        self.symbol = symbol
        self._channel = channel
        self._broadcast = broadcast
        self._read_book = read_book
        self._views: dict[int, _View] = {}
        self._replica: BookReplica | None = None
        self._loaded = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.users = 0
        """Subscribers, counted from before they join (while the book is first read)."""
        self.resyncs = 0

    @property
    def subscribers(self) -> int:
        return sum(len(view.mailboxes) for view in self._views.values())

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"book-feed-{self.symbol}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def join(self, depth: int) -> Mailbox:
        """A mailbox for a ``depth`` view, its first frame the view's SNAPSHOT."""
        await self._loaded.wait()
        assert self._replica is not None
        entry = self._views.get(depth)
        if entry is None:
            entry = self._views[depth] = _View(DepthView(self._replica, depth))
        mailbox = Mailbox()
        mailbox.put(entry.view.whole())
        entry.mailboxes.add(mailbox)
        return mailbox

    def leave(self, depth: int, mailbox: Mailbox) -> None:
        entry = self._views.get(depth)
        if entry is not None:
            entry.mailboxes.discard(mailbox)
            if not entry.mailboxes:
                del self._views[depth]

    async def _load(self) -> BookReplica:
        # Redis down (restarting): wait for it rather than fail the subscriptions.
        snapshot = await when_redis_answers(lambda: self._read_book(self.symbol))
        return BookReplica(snapshot)

    async def _resync(self) -> None:
        self.resyncs += 1
        self._replica = replica = await self._load()
        for entry in self._views.values():
            frame = entry.view.reload(replica)
            for mailbox in entry.mailboxes:
                mailbox.put(frame)

    async def _run(self) -> None:
        # Subscribe first, then read the book: no change can fall between the two.
        async with self._broadcast.subscribe(self._channel) as events:
            self._replica = await self._load()
            self._loaded.set()
            async for event in events:
                if event.message in (GAP, OVERFLOW):
                    await self._resync()
                    continue
                try:
                    message = wire.decode_book_message(event.message)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    log.error(
                        "unreadable book message on %s (%s): resynchronising", self._channel, exc
                    )
                    await self._resync()
                    continue
                if not isinstance(message, wire.BookDelta):
                    continue  # a halt or resume changes no level
                try:
                    if not self._replica.apply(message.levels):
                        continue
                except BookGap as gap:
                    log.warning("book feed resynchronises: %s", gap)
                    await self._resync()
                    continue
                self._publish(self._replica)

    def _publish(self, replica: BookReplica) -> None:
        for entry in self._views.values():
            frame = entry.view.advance(replica)
            if frame is not None:
                for mailbox in entry.mailboxes:
                    mailbox.put(frame, entry.view.current)


class BookFeeds:
    """This process's book feeds, started by the first subscriber of a market."""

    def __init__(
        self,
        broadcast: BoundedBroadcast,
        channel_of: Callable[[str], str],
        read_book: Callable[[str], Awaitable[BookSnapshot]],
    ) -> None:
        self._broadcast = broadcast
        self._channel_of = channel_of
        self._read_book = read_book
        self._feeds: dict[str, BookFeed] = {}

    def feed(self, symbol: str) -> BookFeed | None:
        return self._feeds.get(symbol)

    @asynccontextmanager
    async def subscribe(self, symbol: str, depth: int) -> AsyncIterator[Mailbox]:
        """A mailbox of ``depth`` frames of ``symbol`` (a known market's stored symbol)."""
        feed = self._feeds.get(symbol)
        if feed is None:
            feed = self._feeds[symbol] = BookFeed(
                symbol, self._channel_of(symbol), self._broadcast, self._read_book
            )
            feed.start()
        feed.users += 1
        mailbox: Mailbox | None = None
        try:
            mailbox = await feed.join(depth)
            yield mailbox
        finally:
            if mailbox is not None:
                feed.leave(depth, mailbox)
            feed.users -= 1
            if feed.users == 0 and self._feeds.get(symbol) is feed:
                del self._feeds[symbol]
                await feed.stop()

    async def close(self) -> None:
        feeds, self._feeds = list(self._feeds.values()), {}
        for feed in feeds:
            await feed.stop()
