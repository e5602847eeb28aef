"""The command bus: API processes (and the CLI) submit commands; the matching worker answers.

Commands go onto one Redis Stream read by the worker's consumer group, each as an
:class:`app.wire.Envelope`: an id (chosen by the caller, so a retry reuses it), the kind,
the reply channel of the submitting process and the command's JSON. Replies come back on
that one channel per process — one subscription, resolved to a future per pending command
id — never one blocking connection per waiting request. The worker sends one
:class:`app.wire.ReplyBatch` per channel per committed batch; each waiter decodes only its
own reply.

:meth:`CommandBus.send` takes and returns the wire's types. :meth:`CommandBus.submit` sends a
kind and a payload as given and returns the reply as plain JSON: for tools and tests that
must be able to send what no type allows.

A command id the worker has already committed is never applied again: a retry gets the
original reply.

Redis going away is survived: the reply subscription reconnects and subscribes again by
itself, and a command submitted while Redis is unreachable fails with
:class:`CommandBusUnavailable` (a :class:`CommandTimeout`: the outcome is unknown, a retry
with the same command id is safe) instead of an unexpected error.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
import uuid
from collections import defaultdict
from typing import Any

import msgspec
import orjson
from prometheus_client import Histogram
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app import wire
from app.kit.redis import Keys

log = logging.getLogger(__name__)

CONSUMER_GROUP = "matching"
DEFAULT_TIMEOUT = 5.0
MAX_COMMAND_ID_LENGTH = 64
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)

APPEND_COMMANDS = """
-- KEYS[1]: the command stream. ARGV: id, kind, reply_to, payload for each command.
for i = 1, #ARGV, 4 do
    redis.call("XADD", KEYS[1], "*", "id", ARGV[i], "kind", ARGV[i + 1],
        "reply_to", ARGV[i + 2], "payload", ARGV[i + 3])
end
return #ARGV / 4
"""

COMMAND_REPLY_SECONDS = Histogram(
    "tradegraph_command_reply_seconds",
    "Time from submitting a command to the worker's reply",
    ["kind"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


class CommandTimeout(TimeoutError):
    """The worker did not answer in time. Retrying with the same command id is safe."""

    def __init__(self, command_id: str, timeout: float) -> None:
        super().__init__(
            f"the matching worker did not answer command {command_id} within {timeout:g}s; "
            "retry with the same command id"
        )
        self.command_id = command_id


class CommandBusUnavailable(CommandTimeout):
    """Redis could not be reached to send the command or to hear its reply."""

    def __init__(self, command_id: str, reason: BaseException | str) -> None:
        TimeoutError.__init__(
            self,
            f"the command bus (Redis) is unreachable ({reason}); command {command_id} may "
            "not have been sent; retry with the same command id",
        )
        self.command_id = command_id


@functools.cache
def _reply_seconds(kind: str) -> Histogram:
    return COMMAND_REPLY_SECONDS.labels(kind)


def _expire(future: asyncio.Future[msgspec.Raw]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


_last_id_ns = 0
_PROCESS_TAG = secrets.token_hex(8)


def new_command_id() -> str:
    """A unique id that sorts by creation time: nanoseconds, then this process's tag.

    Time order puts each new id at the right-hand end of the primary key of
    ``processed_commands`` instead of on a random page of an index that outgrows memory.
    The time part strictly increases within a process (even if the clock stalls or steps
    back) and the tag is 64 random bits drawn once per process, so ids never repeat -
    without a random-number syscall per command."""
    global _last_id_ns
    now = time.time_ns()
    _last_id_ns = now if now > _last_id_ns else _last_id_ns + 1
    return f"{_last_id_ns:016x}{_PROCESS_TAG}"


class CommandBus:
    """One per process. ``await bus.send(command)`` returns the worker's reply."""

    def __init__(self, redis: Redis, keys: Keys, *, process_id: str | None = None) -> None:
        self._redis = redis
        self._keys = keys
        self.process_id = process_id or uuid.uuid4().hex
        self.reply_channel = keys.replies(self.process_id)
        self._waiting: dict[str, list[asyncio.Future[msgspec.Raw]]] = defaultdict(list)
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._start_lock = asyncio.Lock()
        # Commands submitted in the same event-loop turn go to Redis in one pipeline.
        self._outbox: list[tuple[list[str], asyncio.Future[msgspec.Raw]]] = []
        self._flush_scheduled = False
        self._flushes: set[asyncio.Task[None]] = set()
        self._append = redis.register_script(APPEND_COMMANDS)

    async def start(self) -> None:
        if self._subscribed.is_set():
            return
        async with self._start_lock:
            if self._listener is None:
                self._listener = asyncio.create_task(self._listen(), name="command-replies")
        await self._subscribed.wait()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
            self._subscribed.clear()

    async def send(
        self,
        command: wire.Command,
        *,
        command_id: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - the caller's deadline for the reply
    ) -> wire.Reply:
        """Send a command and wait for its reply; raise CommandTimeout after ``timeout``."""
        command_id = command_id or new_command_id()
        envelope = wire.envelope(command, command_id=command_id, reply_to=self.reply_channel)
        reply = await self._request(envelope.fields(), timeout)
        return wire.decode_reply(reply)

    async def submit(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        command_id: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - the caller's deadline for the reply
    ) -> dict[str, Any]:
        """Send ``payload`` as a ``kind`` command, unchecked, and return the reply as JSON
        (for tools and tests; the services :meth:`send` typed commands)."""
        command_id = command_id or new_command_id()
        fields = [command_id, kind, self.reply_channel, orjson.dumps(payload).decode()]
        reply: dict[str, Any] = msgspec.json.decode(await self._request(fields, timeout))
        return reply

    async def _request(self, fields: list[str], timeout: float) -> msgspec.Raw:  # noqa: ASYNC109
        """Append ``fields`` (id, kind, reply_to, payload) and wait for the undecoded reply."""
        command_id, kind = fields[0], fields[1]
        if not 0 < len(command_id) <= MAX_COMMAND_ID_LENGTH:
            raise ValueError(f"a command id has 1 to {MAX_COMMAND_ID_LENGTH} characters")
        if not self._subscribed.is_set():
            # While Redis is down the subscription waits for it; once it is up this is
            # skipped: wait_for starts a task, which would cost every command ~30 µs.
            try:
                await asyncio.wait_for(self.start(), timeout)
            except TimeoutError:
                raise CommandBusUnavailable(command_id, "no reply subscription") from None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[msgspec.Raw] = loop.create_future()
        self._waiting[command_id].append(future)
        # A timer on the future itself: asyncio.wait_for costs several times more per call.
        expiry = loop.call_later(timeout, _expire, future)
        started = time.perf_counter()
        try:
            self._send(fields, future)
            reply = await future
        except TimeoutError:  # before OSError, of which it is a kind
            raise CommandTimeout(command_id, timeout) from None
        except (RedisError, OSError) as exc:
            raise CommandBusUnavailable(command_id, exc) from None
        finally:
            expiry.cancel()
            waiting = self._waiting.get(command_id)
            if waiting is not None:
                with contextlib.suppress(ValueError):
                    waiting.remove(future)
                if not waiting:
                    del self._waiting[command_id]
        _reply_seconds(kind).observe(time.perf_counter() - started)
        return reply

    def _send(self, fields: list[str], reply: asyncio.Future[msgspec.Raw]) -> None:
        """Queue ``fields`` (id, kind, reply_to, payload) for the stream, appended with
        whatever else is submitted in this loop turn; if Redis refuses, ``reply`` gets the
        error."""
        self._outbox.append((fields, reply))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._start_flush)

    def _start_flush(self) -> None:
        task = asyncio.get_running_loop().create_task(self._flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self) -> None:
        batch, self._outbox, self._flush_scheduled = self._outbox, [], False
        try:
            # One script call appends the whole batch: one reply to parse instead of one
            # per command (redis-py's per-reply cost was the client's largest).
            await self._append(
                keys=[self._keys.command_stream()],
                args=[value for fields, _ in batch for value in fields],
            )
        except Exception as exc:
            for _, reply in batch:
                if not reply.done():
                    reply.set_exception(exc)

    async def _listen(self) -> None:
        """Resolve futures from the reply channel; resubscribe if Redis goes away."""
        backoff = 0.1
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.reply_channel)
                self._subscribed.set()
                backoff = 0.1
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        try:
                            self._resolve(message["data"])
                        except (ValueError, KeyError, TypeError, msgspec.DecodeError):
                            log.exception("unreadable reply message on %s", self.reply_channel)
            except REDIS_DOWN as exc:
                self._subscribed.clear()  # submits wait (within their timeout) for the next
                log.warning("reply channel lost (%s); resubscribing in %.1fs", exc, backoff)
            except Exception:  # never end: every later submit would wait for nothing
                self._subscribed.clear()
                log.exception("reply listener failed; resubscribing in %.1fs", backoff)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def _resolve(self, data: str | bytes) -> None:
        for command_id, reply in wire.split_replies(data):
            for future in self._waiting.get(command_id, ()):
                if not future.done():
                    future.set_result(reply)
