"""Redis pub/sub for subscriptions: broadcaster, with a backend that survives Redis restarts
and subscriber queues that cannot grow without bound.

Stock broadcaster ends every subscription when its Redis connection drops, and buffers
without limit for a slow subscriber. Here:

- :class:`ResilientRedisBackend` reconnects with backoff, resubscribes every channel it had,
  and tells each subscriber that messages may have been missed (:data:`GAP`), so a book
  subscriber resynchronises from a fresh snapshot instead of silently skipping deltas.
- :class:`BoundedBroadcast` gives each subscriber a queue of ``max_queue`` messages. What a
  subscriber that falls behind gets depends on its stream: one that can start again from a
  snapshot (the book) has its queue dropped to a single :data:`OVERFLOW` marker; a
  ``lossless`` one (your orders and fills, which no snapshot replaces) keeps every message
  already queued, receives nothing more, and its iteration raises :class:`SlowConsumer`
  after the last of them, so the caller can end the stream *knowing* nothing was skipped.
- :func:`when_redis_answers` is how a subscription reads Redis (a book snapshot, a session
  check): while Redis is unreachable it waits and retries with backoff instead of failing,
  so a Redis restart delays a subscription but never ends it with an internal error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from broadcaster import Broadcast, Event
from broadcaster._backends.base import BroadcastBackend
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.kit.metrics import SUBSCRIPTION_OVERFLOWS

log = logging.getLogger(__name__)

T = TypeVar("T")

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
"""What a call to an unreachable (or restarting, still loading) Redis raises."""

GAP = "\x00gap"
"""Message delivered to every channel after a reconnect: some messages may be lost."""
OVERFLOW = "\x00overflow"
"""Message that replaces a subscriber's queue when it fell too far behind (or, for a
``lossless`` subscriber, follows the messages it still gets)."""


class SlowConsumer(Exception):
    """A ``lossless`` subscriber fell ``max_queue`` messages behind: it has been given every
    message queued before that, and will get no more."""


async def when_redis_answers(
    call: Callable[[], Awaitable[T]], *, first_delay: float = 0.05, max_delay: float = 2.0
) -> T:
    """``await call()``, retried with exponential backoff for as long as Redis is down.

    Only for subscriptions, which have a client waiting as long as it likes (it can always
    go away: the cancellation ends the wait). Anything but a Redis outage is raised.
    """
    delay = first_delay
    while True:
        try:
            return await call()
        except REDIS_DOWN as exc:
            log.info("Redis unreachable (%s); retrying in %.2fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)


class ResilientRedisBackend(BroadcastBackend):
    def __init__(self, connect: Callable[[], Redis]) -> None:
        self._connect = connect
        self._redis: Redis | None = None
        self._channels: set[str] = set()
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._listener: asyncio.Task[None] | None = None
        self._pubsub: Any = None
        self._changed = asyncio.Event()
        # Held while the channel set and the live connection's subscriptions are brought in
        # line, so a channel added during a (re)connect is never left unsubscribed.
        self._lock = asyncio.Lock()
        self.reconnects = 0

    async def connect(self) -> None:
        self._redis = self._connect()
        self._listener = asyncio.create_task(self._listen(), name="pubsub-listener")

    async def disconnect(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._redis is not None:
            await self._redis.aclose()

    async def subscribe(self, channel: str) -> None:
        async with self._lock:
            self._channels.add(channel)
            if self._pubsub is not None:
                # A failure here is a lost connection: the listener resubscribes everything.
                with contextlib.suppress(*REDIS_DOWN):
                    await self._pubsub.subscribe(channel)
        self._changed.set()

    async def unsubscribe(self, channel: str) -> None:
        async with self._lock:
            self._channels.discard(channel)
            if self._pubsub is not None:
                with contextlib.suppress(*REDIS_DOWN):
                    await self._pubsub.unsubscribe(channel)

    async def publish(self, channel: str, message: Any) -> None:
        assert self._redis is not None
        await self._redis.publish(channel, message)

    async def next_published(self) -> Event:
        return await self._queue.get()

    async def _listen(self) -> None:
        assert self._redis is not None
        backoff = 0.05
        lost = False
        while True:
            if not self._channels:
                self._changed.clear()
                await self._changed.wait()
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                async with self._lock:
                    await pubsub.subscribe(*self._channels)
                    self._pubsub = pubsub
                if lost:
                    self.reconnects += 1
                    log.info("pub/sub reconnected; %d channels resubscribed", len(self._channels))
                    for channel in list(self._channels):
                        await self._queue.put(Event(channel, GAP))
                    lost = False
                backoff = 0.05
                while self._channels:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        data = message["data"]
                        channel = message["channel"]
                        await self._queue.put(
                            Event(
                                channel.decode() if isinstance(channel, bytes) else channel,
                                data.decode() if isinstance(data, bytes) else data,
                            )
                        )
            except REDIS_DOWN as exc:
                lost = True
                log.warning("pub/sub connection lost (%s); retrying in %.2fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                # Under the lock: the last channel's unsubscribe may be mid-send on this
                # connection (it empties the channel set, which ends the loop above, first).
                async with self._lock:
                    self._pubsub = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]


class BoundedSubscriber:
    """One subscriber's queue, at most ``max_queue`` messages long (see the module)."""

    def __init__(self, channel: str, max_queue: int, *, lossless: bool) -> None:
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._channel = channel
        self._max_queue = max_queue
        self.lossless = lossless
        self.overflowed = False

    def offer(self, event: Event) -> None:
        """Queue ``event``, unless this subscriber is too far behind (see the module)."""
        if self.overflowed:
            return
        if self._queue.qsize() < self._max_queue:
            self._queue.put_nowait(event)
            return
        if self.lossless:
            # Keep what it has not read; the marker after it ends the iteration.
            self.overflowed = True
            SUBSCRIPTION_OVERFLOWS.labels("close").inc()
        else:
            SUBSCRIPTION_OVERFLOWS.labels("resync").inc()
            # It will start again from a snapshot: drop what it has not read, tell it once.
            while not self._queue.empty():
                self._queue.get_nowait()
        self._queue.put_nowait(Event(self._channel, OVERFLOW))

    async def get(self) -> Event | None:
        """The next event; ``None`` once unsubscribed."""
        return await self._queue.get()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while (event := await self._queue.get()) is not None:
            if self.lossless and event.message == OVERFLOW:
                raise SlowConsumer(f"more than {self._max_queue} messages behind")
            yield event


class BoundedBroadcast(Broadcast):
    def __init__(self, backend: BroadcastBackend, *, max_queue: int = 1000) -> None:
        super().__init__(backend=backend)
        self.max_queue = max_queue
        self._bounded: dict[str, set[BoundedSubscriber]] = {}
        self._task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        await self._backend.connect()
        self._task = asyncio.create_task(self._listener(), name="broadcast")

    async def disconnect(self) -> None:
        """Stop listening; safe to call when ``connect`` never ran."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        await self._backend.disconnect()

    async def _listener(self) -> None:
        while True:
            event = await self._backend.next_published()
            for subscriber in list(self._bounded.get(event.channel, ())):
                subscriber.offer(event)

    @asynccontextmanager
    async def subscribe(  # type: ignore[override]
        self, channel: str, *, lossless: bool = False
    ) -> AsyncIterator[BoundedSubscriber]:
        """``lossless``: on overflow, deliver what is queued and then raise
        :class:`SlowConsumer` (instead of dropping the queue to an :data:`OVERFLOW` marker)."""
        subscriber = BoundedSubscriber(channel, self.max_queue, lossless=lossless)
        subscribers = self._bounded.setdefault(channel, set())
        first = not subscribers
        subscribers.add(subscriber)
        try:
            if first:
                await self._backend.subscribe(channel)
            yield subscriber
        finally:
            subscribers.discard(subscriber)
            if not subscribers:
                self._bounded.pop(channel, None)
                await self._backend.unsubscribe(channel)
