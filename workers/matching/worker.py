"""The matching worker's loop: read commands, match, group-commit, answer, acknowledge.

Three stages run side by side, joined by queues one batch deep:

    matcher:   read up to MAX_BATCH stream entries (pending ones first after a restart)
               → run each through the engine (ids already committed or in flight get
                 their earlier reply) → hand the batch to the committer
    committer: write every row of the batch in ONE PostgreSQL statement, command ids
               included → hand it to the publisher
    publisher: in one pipeline, only now, after the commit: update the Redis book cache and
               publish the events, send the replies to the callers, then XACK (and trim)
               the entries.

So the engine matches batch N+2 while PostgreSQL commits batch N+1 and Redis carries batch
N; each stage takes the batches strictly in order. A reply never reports something that
is not committed.

What must never stop matching:

- A malformed entry. Every field is checked by the codec before the database sees it (a
  bad one is answered INVALID_INPUT); an id that could not be stored or looked up is
  answered without a lookup; an entry delivered more than MAX_DELIVERIES times is written
  off (answered INTERNAL) before any database access; if the batch's dedupe lookup fails,
  the ids are looked up one at a time and the one that fails is written off alone.
- Redis going away. The read loop and the publisher retry with backoff until Redis is
  back; then the matcher lets the batches in flight finish, recreates the consumer group
  (a Redis that lost its data answers NOGROUP), rebuilds the book cache from the engine and
  re-reads its pending entries. The commit is durable and replayed ids are answered from
  ``processed_commands``, so nothing is applied twice and nothing acknowledged is lost.

What stops the process (non-zero, so a supervisor restarts it and recovery rebuilds the
engine from PostgreSQL): a commit that fails, or any other unexpected error in a stage -
the engine's state is then ahead of what is durable. The heartbeat is written by the matcher
loop itself, once a turn at most every HEARTBEAT_SECONDS, and only while no batch has been
stuck in the pipeline for STALL_SECONDS: a wedged worker's heartbeat expires and ``/readyz``
reports it. SIGTERM finishes the batches in flight within SHUTDOWN_SECONDS, or gives up on
them (they stay unacknowledged) and exits non-zero; it never waits forever.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec
import orjson
from prometheus_client import Counter as Metric
from prometheus_client import Histogram
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app import wire
from app.config import Settings
from app.kit.bus import CONSUMER_GROUP
from app.kit.db import plain_url
from app.kit.metrics import serve_metrics
from app.kit.redis import Keys
from engine import AmendOrder, Command, CommandRejected, Engine, Event, PlaceOrder, RejectCode, Tick
from engine import SetFeeTier as ChargeTier
from workers.matching.batches import Entries, entries, run_entries
from workers.matching.codec import (
    BadCommand,
    command_id_problem,
    engine_command,
    printable,
    read,
    recorded_kind,
    rejected,
    reply_for,
)
from workers.matching.fees import FeeBook, fee_row, load_fees
from workers.matching.kyc import KYC_MESSAGE, KYC_REQUIRED, KycBook, load_kyc
from workers.matching.publish import publish_events, rebuild_book_cache
from workers.matching.recovery import restore_engine
from workers.matching.refusals import RefusalWatch
from workers.matching.store import Batch, OpenOrders, load_open_orders

log = logging.getLogger(__name__)

CONSUMER = "matching-worker"
MAX_BATCH = 1000
BLOCK_MS = 50
HEARTBEAT_SECONDS = 0.5
HEARTBEAT_TTL = 3
STALL_SECONDS = 3.0
"""A batch in the pipeline longer than this (a commit waiting on a lock, a publish waiting
on Redis) stops the heartbeat: the worker is not making progress."""
SHUTDOWN_SECONDS = 5.0
"""SIGTERM: how long the batches already matched get to be committed and published."""
CONNECT_SECONDS = 10.0
MAX_BACKOFF = 2.0
MAX_DELIVERIES = 3
"""An entry delivered this many times without being acknowledged is answered as failed."""
EXIT_FAILED = 70
"""A stage failed: the engine may be ahead of PostgreSQL; restart to rebuild it."""
EXIT_SHUTDOWN_TIMEOUT = 75
"""SIGTERM, but the batches in flight could not be finished in time (they will be re-read)."""

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
"""Redis is unreachable (restarting, network): retried, never fatal."""
POSTGRES_DOWN = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)
"""PostgreSQL is unreachable: a lookup failing so says nothing about the command."""

COMMANDS = Metric("tradegraph_worker_commands_total", "Commands processed", ["kind", "outcome"])
BATCH_SIZE = Histogram(
    "tradegraph_worker_batch_size",
    "Commands per group commit",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
COMMIT_SECONDS = Histogram(
    "tradegraph_worker_commit_seconds",
    "Time to write and commit one batch",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
REPLY_SECONDS = Histogram(
    "tradegraph_worker_command_to_reply_seconds",
    "From a command's arrival on the stream (its entry id's time, to the millisecond) to "
    "its reply being published",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

WRITTEN_OFF = "the worker could not process this command"

Decoded = Command | wire.SetKyc | wire.SetFeeTier | Entries
"""What the matcher runs: an engine command, or one the worker handles around the engine
(a KYC decision; a fee tier, which the worker decides and the engine charges; a batch's
entries, each an engine command)."""


def _decode(kind: str, payload_text: str) -> Decoded | wire.Reply:
    """The command of a stream entry, or the INVALID_INPUT reply if it has none."""
    try:
        command = read(kind, payload_text)
        match command:
            case wire.SetKyc() | wire.SetFeeTier():
                return command  # the worker's own state, around the engine
            case wire.PlaceBatch() | wire.CancelBatch():
                return entries(command)
        return engine_command(command)
    except BadCommand as exc:
        return rejected(RejectCode.INVALID_INPUT, str(exc), exc.field)
    except UnicodeError as exc:
        return rejected(RejectCode.INVALID_INPUT, f"the payload is not UTF-8 JSON: {exc}")
    except Exception:  # a codec bug must not stop matching: the command is not run
        log.exception("could not decode a %r command", printable(kind)[:40])
        return rejected(RejectCode.INVALID_INPUT, "the command could not be read")


def _after(entry_id: str) -> str:
    """The smallest stream id greater than ``entry_id``."""
    millis, sequence = entry_id.split("-")
    return f"{millis}-{int(sequence) + 1}"


def _user_of(command: Decoded) -> int | None:
    user_id = getattr(command, "user_id", None)
    return user_id if isinstance(user_id, int) else None


def _create_redis(url: str) -> Redis:
    """The worker's client. Bytes that are not UTF-8 (an entry written by hand) decode to
    lone surrogates, which the codec refuses, instead of failing the whole read."""
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        encoding_errors="surrogateescape",
        health_check_interval=30,
        max_connections=16,
        timeout=10,
        socket_connect_timeout=2,
    )
    return Redis(connection_pool=pool)


@dataclass(slots=True)
class Matched:
    """A batch the engine has run, waiting for its commit."""

    entry_ids: list[str]
    batch: Batch
    events: list[Event]
    replies: dict[str, list[wire.Answer]]
    started: float
    write_off_only: bool = False
    """Only written-off entries: if even recording them fails, they are answered anyway."""
    risk_ids: list[int] = field(default_factory=list)
    """Filled in by the commit: the ids PostgreSQL gave the batch's risk events."""


class StageFailed(Exception):
    """A stage could not go on; the process exits so a restart recovers."""


class MatchingWorker:
    def __init__(self, settings: Settings) -> None:
        assert settings.database_url and settings.redis_url
        self.settings = settings
        self.keys = Keys(settings.redis_prefix)
        self.redis: Redis = _create_redis(settings.redis_url)
        self.stream = self.keys.command_stream()
        self.stopping = asyncio.Event()
        self.engine: Engine | None = None
        self.conn: asyncpg.Connection | None = None
        """The matcher's connection: reads (committed command ids, users)."""
        self.writer: asyncpg.Connection | None = None
        """The committer's connection: one statement per batch."""
        self.kyc = KycBook()
        """Which users exist and which may trade (the worker writes their KYC status)."""
        self.fees = FeeBook({1: 0})
        """Fee tiers, pins and running 30-day volumes (the worker writes the tiers)."""
        self.in_flight: dict[str, wire.Reply | msgspec.Raw] = {}
        """Replies of commands matched but not yet committed, by command id."""
        self.open_orders: OpenOrders = {}
        """The stored row of every open order (what replies and events show of it)."""
        self.batches: asyncio.Queue[Matched] = asyncio.Queue(maxsize=1)
        """Matched, waiting for the committer."""
        self.committed: asyncio.Queue[Matched] = asyncio.Queue(maxsize=1)
        """Committed, waiting for the publisher."""
        self.unfinished: deque[Matched] = deque()
        """Matched and not yet published, oldest first (the heartbeat's progress check)."""
        self.refusals = RefusalWatch()
        """Repeated risk refusals of one account: raised as risk events."""
        self.last_beat = 0.0
        self.heartbeat_value = orjson.dumps({"pid": os.getpid(), "host": socket.gethostname()})

    async def _connect(self, **settings: str) -> asyncpg.Connection:
        return await asyncpg.connect(
            plain_url(self.settings.database_url or ""),
            server_settings=settings,
            timeout=CONNECT_SECONDS,
        )

    async def run(self) -> int:
        """Run until SIGTERM (exit code 0) or until a stage fails (non-zero)."""
        # Reads are planned for their own arguments: a generic plan cached while a table was
        # small (a fresh deployment) would keep scanning it sequentially.
        self.conn = await self._connect(plan_cache_mode="force_custom_plan")
        # The batch statement joins a few hundred rows to tables of millions by primary
        # key: only index lookups make sense, whatever the statistics of a young table say
        # (a hash join over a sequential scan of orders took a third of the backend's CPU
        # on a fresh database). With joins pinned, the generic plan is reused, unplanned.
        self.writer = await self._connect(
            enable_hashjoin="off", enable_mergejoin="off", enable_seqscan="off"
        )
        started = time.perf_counter()
        # The rows of the open orders (what replies and events show of them) are read on
        # the other connection while the engine is restored: nothing writes orders yet.
        open_orders = asyncio.ensure_future(load_open_orders(self.writer))
        self.engine = await restore_engine(
            self.conn, max_open_orders_per_user=self.settings.max_open_orders_per_user
        )
        self.open_orders = await open_orders
        self.kyc = await load_kyc(self.conn)
        self.fees = await load_fees(self.conn)
        log.info("engine restored in %.3fs", time.perf_counter() - started)
        # The restored books are long-lived: keep them out of every collection, and collect
        # the young generation less often (a batch allocates thousands of short-lived
        # events; most die by reference counting, not by the cycle collector).
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)
        stages = [
            asyncio.create_task(self._matcher(), name="matcher"),
            asyncio.create_task(self._committer(), name="committer"),
            asyncio.create_task(self._publisher(), name="publisher"),
        ]
        stop = asyncio.create_task(self.stopping.wait())
        done, _ = await asyncio.wait([*stages, stop], return_when=asyncio.FIRST_COMPLETED)
        code = 0
        if stop in done:
            # SIGTERM: the matcher stops reading and waits for the batches already matched.
            finished, _ = await asyncio.wait([stages[0]], timeout=SHUTDOWN_SECONDS)
            if not finished or stages[0].exception() is not None:
                log.error(
                    "the batches in flight did not finish within %gs; exiting, they will be "
                    "re-read on restart",
                    SHUTDOWN_SECONDS,
                )
                code = EXIT_SHUTDOWN_TIMEOUT
        else:
            for task in done:
                if task.cancelled() or task.exception() is not None:
                    exc = None if task.cancelled() else task.exception()
                    log.error(
                        "the %s stage failed; exiting to recover",
                        task.get_name(),
                        exc_info=exc,
                    )
            code = EXIT_FAILED
        stop.cancel()
        if code:
            _exit_after(SHUTDOWN_SECONDS, code)
        await self._close(stages, graceful=code == 0)
        return code

    async def _close(self, tasks: list[asyncio.Task[None]], *, graceful: bool) -> None:
        """Stop the stages and close the connections, each within a bounded time."""
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=2.0)
        if graceful:  # a failed worker's heartbeat is left to expire
            await _bounded(self.redis.delete(self.keys.worker_heartbeat()))
        await _bounded(self.redis.aclose())
        for conn in (self.conn, self.writer):
            if conn is not None and not await _bounded(conn.close()):
                conn.terminate()

    # The matcher stage.

    async def _matcher(self) -> None:
        await self._redis_ready()
        while not self.stopping.is_set():
            try:
                await self._beat()
                entries = await self._read(">", block=BLOCK_MS)
            except REDIS_DOWN as exc:
                log.warning("Redis is unreachable (%s); reconnecting", exc)
                await self._redis_ready()
                continue
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("the command stream's group is gone (Redis lost its data)")
                await self._redis_ready()
                continue
            if entries:
                await self._hand_on(await self._match(entries))
            elif self._resume_due():
                # A circuit breaker's cool-down ended while no command came: the tick of an
                # empty batch resumes the market (committed like any change).
                await self._hand_on(await self._match([]))
        await self._settle()  # SIGTERM: the batches already matched are completed

    def _resume_due(self) -> bool:
        assert self.engine is not None
        due = self.engine.next_resume_ms
        return due is not None and due <= time.time() * 1000

    async def _redis_ready(self) -> None:
        """(Re)join Redis: wait until it answers, let the batches in flight finish, make
        sure the consumer group exists, rebuild the book cache, run the pending entries.

        Called at start and after Redis went away; a Redis that lost its data gets its
        group and its book cache back, one that kept it gets a cache that is exact again."""
        backoff = 0.05
        while not self.stopping.is_set():
            try:
                await self.redis.ping()
                await self._settle()
                await self._ensure_group()
                assert self.engine is not None
                await rebuild_book_cache(self.redis, self.keys, self.engine)
                await self._beat(force=True)
                await self._drain_pending()
                await self._beat(force=True)
                return
            except REDIS_DOWN as exc:
                log.info("waiting for Redis (%s); retrying in %.2fs", exc, backoff)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _beat(self, *, force: bool = False) -> None:
        """The heartbeat, from the matcher loop itself: proof that matching progresses."""
        now = time.monotonic()
        if not force and now - self.last_beat < HEARTBEAT_SECONDS:
            return
        if self.unfinished and now - self.unfinished[0].started > STALL_SECONDS:
            return  # a batch is stuck in the commit or the publish: let the heartbeat lapse
        await self.redis.set(self.keys.worker_heartbeat(), self.heartbeat_value, ex=HEARTBEAT_TTL)
        self.last_beat = now

    async def _hand_on(self, matched: Matched) -> None:
        self.unfinished.append(matched)
        await self.batches.put(matched)

    async def _ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, CONSUMER_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read(
        self, start: str, *, block: int | None, count: int = MAX_BATCH
    ) -> list[tuple[str, dict[str, str]]]:
        response: Any = await self.redis.xreadgroup(
            CONSUMER_GROUP, CONSUMER, {self.stream: start}, count=count, block=block
        )
        if not response:
            return []
        _, entries = response[0]
        gone = [entry_id for entry_id, fields in entries if not fields]
        if gone:  # pending, but deleted from the stream: nothing to run or answer
            await self.redis.xack(self.stream, CONSUMER_GROUP, *gone)
        return [(entry_id, fields) for entry_id, fields in entries if fields]

    async def _drain_pending(self) -> None:
        """Entries delivered before a crash but never acknowledged, oldest first."""
        # Entries left pending by a consumer of another name (an older deployment) come to
        # us, all of them: the stream is trimmed up to each processed batch. XCLAIM with
        # JUSTID keeps their delivery counts (XAUTOCLAIM would count a delivery).
        summary: Any = await self.redis.xpending(self.stream, CONSUMER_GROUP)
        for consumer in summary["consumers"]:
            if consumer["name"] == CONSUMER:
                continue
            while theirs := await self._pending(consumer["name"], 1_000):
                ids = [item["message_id"] for item in theirs]
                await self.redis.xclaim(self.stream, CONSUMER_GROUP, CONSUMER, 0, ids, justid=True)
        while pending := await self._pending(CONSUMER, MAX_BATCH):
            # Delivered once and unacknowledged: the worker stopped mid-batch, whatever the
            # cause; run them as batches again. Delivered more than once: it stopped again
            # while recovering, perhaps because of one of them; run them one at a time so a
            # command that crashes the worker is isolated, and written off alone after
            # MAX_DELIVERIES (each read counts one delivery, so read them one at a time too).
            await self._beat()
            single = any(item["times_delivered"] > 1 for item in pending)
            entries = await self._read("0", block=None, count=1 if single else MAX_BATCH)
            if entries:
                # The read is one more delivery of each entry it returned (the oldest ones).
                deliveries = {i["message_id"]: i["times_delivered"] + 1 for i in pending}
                await self._hand_on(await self._match(entries, deliveries=deliveries))
                await self._settle()

    async def _pending(self, consumer: str, count: int) -> Any:
        """The oldest ``count`` entries pending for ``consumer``, with delivery counts."""
        return await self.redis.xpending_range(
            self.stream, CONSUMER_GROUP, "-", "+", count, consumername=consumer
        )

    async def _settle(self) -> None:
        """Wait until every matched batch is committed, acknowledged and published."""
        await self.batches.join()
        await self.committed.join()

    async def _committed(
        self, ids: list[str]
    ) -> tuple[dict[str, wire.Reply | msgspec.Raw], set[str]]:
        """Replies already given to any of ``ids`` (in flight, or committed earlier), and
        the ids whose lookup failed on their own (written off: they cannot be stored)."""
        assert self.conn is not None
        # In-flight replies first: an id leaves ``in_flight`` only after its commit, so an
        # id missing here is either committed before the query below starts, or new.
        found: dict[str, wire.Reply | msgspec.Raw] = {
            i: self.in_flight[i] for i in ids if i in self.in_flight
        }
        rest = [i for i in ids if i not in found]
        if not rest:
            return found, set()
        try:
            found.update(await self._lookup(rest))
            return found, set()
        except POSTGRES_DOWN:
            raise
        except Exception:
            log.exception("the lookup of %d command ids failed; retrying one at a time", len(rest))
        failed: set[str] = set()
        for command_id in rest:
            try:
                found.update(await self._lookup([command_id]))
            except POSTGRES_DOWN:
                raise
            except Exception:
                log.exception("command id %r cannot be looked up; writing it off", command_id)
                failed.add(command_id)
        return found, failed

    async def _lookup(self, ids: list[str]) -> dict[str, wire.Reply | msgspec.Raw]:
        """The stored replies of ``ids``, as stored: they are sent on undecoded."""
        assert self.conn is not None
        rows = await self.conn.fetch(
            "SELECT command_id, result FROM processed_commands WHERE command_id = ANY($1)", ids
        )
        return {row["command_id"]: msgspec.Raw(row["result"]) for row in rows}

    async def _match(
        self,
        entries: list[tuple[str, dict[str, str]]],
        *,
        deliveries: dict[str, int] | None = None,
    ) -> Matched:
        """Run a batch of entries through the engine (the matcher stage)."""
        assert self.engine is not None
        started = time.perf_counter()
        # Decided before any database access: entries delivered too often are written off,
        # and ids that could not be stored or looked up are answered as they are.
        poisoned = {
            entry_id for entry_id, count in (deliveries or {}).items() if count > MAX_DELIVERIES
        }
        ids = [fields.get("id", entry_id) for entry_id, fields in entries]
        unusable = {
            entry_id: problem
            for (entry_id, _), command_id in zip(entries, ids, strict=True)
            if (problem := command_id_problem(command_id)) is not None
        }
        wanted = [
            command_id
            for (entry_id, _), command_id in zip(entries, ids, strict=True)
            if entry_id not in poisoned and entry_id not in unusable
        ]
        # The lookup travels to PostgreSQL while the payloads are decoded here (one yield
        # lets it send its query).
        lookup = asyncio.ensure_future(self._committed(wanted))
        await asyncio.sleep(0)
        # Each payload is read once: the user check and the engine share the decoded command.
        decoded = [
            _decode(fields.get("kind", ""), fields.get("payload", "{}"))
            if entry_id not in poisoned and entry_id not in unusable
            else None
            for entry_id, fields in entries
        ]
        committed, failed = await lookup
        await self._learn_users(decoded)
        batch = Batch(open_orders=self.open_orders, fees=self.fees)
        # The engine's clock: trades are dated by it (the circuit breaker's window), and a
        # breaker's halt whose cool-down has run resumes here.
        events: list[Event] = self.engine.process(Tick(int(time.time() * 1000)))
        if events:
            batch.add("tick", events)
        replies: dict[str, list[wire.Answer]] = defaultdict(list)
        outcomes: Counter[tuple[str, str]] = Counter()
        for (entry_id, fields), command_id, command in zip(entries, ids, decoded, strict=True):
            kind = recorded_kind(fields.get("kind"))
            result: wire.Reply | msgspec.Raw
            if entry_id in unusable:
                result = rejected(RejectCode.INVALID_INPUT, unusable[entry_id], "id")
                command_id = printable(command_id)  # answered, never stored
                outcomes[kind, "rejected"] += 1
            elif command_id in batch.results:  # twice in one batch
                result = batch.results[command_id]
                outcomes[kind, "replayed"] += 1
            elif entry_id in poisoned:
                result = rejected("INTERNAL", WRITTEN_OFF)
                batch.record(command_id, kind, None, result)
                outcomes[kind, "failed"] += 1
            elif command_id in failed:
                result = rejected("INTERNAL", WRITTEN_OFF)  # answered, never stored
                outcomes[kind, "failed"] += 1
            elif command_id in committed:
                result = committed[command_id]
                outcomes[kind, "replayed"] += 1
            else:
                assert command is not None
                reply, user_id, command_events = self._execute(command, batch, command_id)
                batch.record(command_id, kind, user_id, reply)
                events.extend(command_events)
                outcomes[kind, "ok" if reply.ok else "rejected"] += 1
                result = reply
            if fields.get("reply_to"):
                replies[fields["reply_to"]].append(wire.Answer(id=command_id, result=result))
        for (kind, outcome), count in outcomes.items():
            COMMANDS.labels(kind, outcome).inc(count)
        self.in_flight.update(batch.results)
        entry_ids = [entry_id for entry_id, _ in entries]
        write_off_only = (
            bool(poisoned) and bool(entry_ids) and all(e in poisoned for e in entry_ids)
        )
        return Matched(entry_ids, batch, events, replies, started, write_off_only)

    # The committer and publisher stages.

    async def _committer(self) -> None:
        """Commit the matched batches, one at a time, in order; then hand them on."""
        while True:
            matched = await self.batches.get()
            await self._commit(matched)
            await self.committed.put(matched)
            self.batches.task_done()

    async def _publisher(self) -> None:
        """Publish, answer and acknowledge the committed batches, one at a time, in order.

        Redis being away is waited out: the commit is durable, and everything sent here
        can be sent again (subscribers drop deltas they have, a second reply finds no
        caller waiting, XACK is idempotent)."""
        while True:
            matched = await self.committed.get()
            backoff = 0.05
            while True:
                try:
                    await self._publish(matched)
                    break
                except REDIS_DOWN as exc:
                    log.warning("could not publish a batch (%s); retrying in %.2fs", exc, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
            self.unfinished.popleft()
            self.committed.task_done()

    async def _commit(self, matched: Matched) -> None:
        assert self.writer is not None
        batch = matched.batch
        if batch:
            commit_started = time.perf_counter()
            try:
                matched.risk_ids.extend(await batch.write(self.writer))
            except POSTGRES_DOWN:
                raise
            except Exception:
                if not matched.write_off_only:
                    raise
                # Even the record of the write-off is refused: answer it all the same.
                log.exception("could not record %d written-off commands", len(batch.results))
            COMMIT_SECONDS.observe(time.perf_counter() - commit_started)
        for command_id in batch.results:
            self.in_flight.pop(command_id, None)
        BATCH_SIZE.observe(len(matched.entry_ids))

    async def _publish(self, matched: Matched) -> None:
        batch = matched.batch
        # Book cache and events first, then the replies: a caller that reads the book after
        # its reply sees its order. Acknowledging last only risks a harmless replay.
        async with self.redis.pipeline(transaction=False) as pipe:
            publish_events(
                pipe,
                self.keys,
                matched.events,
                matched.risk_ids,
                batch,
                self.settings.activity_stream_maxlen,
            )
            for channel, channel_replies in matched.replies.items():
                pipe.publish(channel, wire.encode(wire.ReplyBatch(replies=channel_replies)))
            if matched.entry_ids:  # a tick's batch has none
                pipe.xack(self.stream, CONSUMER_GROUP, *matched.entry_ids)
                # Everything before the batch's last entry is acknowledged (batches go in
                # order): trim by id instead of naming every entry again.
                pipe.xtrim(self.stream, minid=_after(matched.entry_ids[-1]), approximate=False)
            await pipe.execute()
        now_ms = time.time() * 1000
        for entry_id in matched.entry_ids:
            REPLY_SECONDS.observe(max(0.0, now_ms - int(entry_id.partition("-")[0])) / 1000)
        log.debug(
            "batch of %d in %.2f ms",
            len(matched.entry_ids),
            (time.perf_counter() - matched.started) * 1e3,
        )

    def _execute(
        self, command: Decoded | wire.Reply, batch: Batch, command_id: str
    ) -> tuple[wire.Reply, int | None, list[Event]]:
        """Run one decoded command and add its events to ``batch``; a payload that could not
        be decoded is its own reply."""
        assert self.engine is not None
        if isinstance(command, wire.Reply):
            return command, None, []
        user_id = _user_of(command)
        if user_id is not None and user_id not in self.kyc.known:
            return rejected(RejectCode.NOT_FOUND, f"no user {user_id}", "user_id"), None, []
        match command:
            case PlaceOrder() | AmendOrder() if not self.kyc.may_trade(command.user_id):
                # The worker holds every user's KYC status (it writes it): an approval or a
                # rejection counts from the next command on, whichever API process sent it.
                return rejected(KYC_REQUIRED, KYC_MESSAGE), user_id, []
            case Entries():
                may_trade = self.kyc.may_trade(command.user_id)
                reply, events = run_entries(
                    command, may_trade, lambda each: self._run(each, batch, command_id)
                )
                return reply, user_id, events
            case wire.SetKyc():
                self.kyc.record(command.user_id, command.status)
                batch.kyc_statuses[command.user_id] = command.status
                return wire.Reply(), user_id, []
            case wire.SetFeeTier():
                reply, tier, row = self.fees.apply(command)
                events = (
                    [] if tier is None else self.engine.process(ChargeTier(command.user_id, tier))
                )
                if row is not None:
                    batch.fee_tier(row)
                return reply, user_id, events
        reply, events = self._run(command, batch, command_id)
        return reply, user_id, events

    def _run(
        self, command: Command, batch: Batch, command_id: str
    ) -> tuple[wire.Reply, list[Event]]:
        """One engine command: its events go into ``batch``, its reply shows their rows."""
        assert self.engine is not None
        events = self.engine.process(command)
        first = events[0] if events else None
        user_id = getattr(command, "user_id", None)
        if type(first) is CommandRejected and first.rule is not None and type(user_id) is int:
            alert = self.refusals.refused(
                user_id,
                first.rule,
                first.message,
                time.monotonic(),
                getattr(command, "symbol", None),
            )
            if alert is not None:
                events = [*events, alert]
        changed, filled = len(batch.changes), len(batch.trades)
        batch.add(command_id, events)
        reply = reply_for(command, events, batch.changes[changed:], batch.trades[filled:])
        if self.fees.upgrades:  # a fill reached a higher tier: the next order pays it
            for user_id, tier in self.fees.take_upgrades():
                self.engine.process(ChargeTier(user_id, tier))
                batch.fee_tier(fee_row(user_id, tier))
        return reply, events

    async def _learn_users(self, commands: list[Decoded | wire.Reply | None]) -> None:
        """Read the users seen for the first time (created since the start)."""
        wanted: set[int] = set()
        for command in commands:
            user_id = (
                None if command is None or isinstance(command, wire.Reply) else _user_of(command)
            )
            if user_id is not None and user_id not in self.kyc.known:
                wanted.add(user_id)
        if wanted and self.conn is not None:
            await self.kyc.learn(self.conn, wanted)


async def _bounded(step: Awaitable[Any], seconds: float = 2.0) -> bool:
    """Await ``step`` for at most ``seconds``; whether it finished without an error."""
    try:
        await asyncio.wait_for(step, seconds)
    except Exception:
        return False
    return True


def _exit_after(seconds: float, code: int) -> None:
    """The last resort: end the process after ``seconds`` whatever the event loop does."""

    def end() -> None:
        log.error("the worker did not stop within %gs; exiting", seconds)
        logging.shutdown()
        os._exit(code)

    timer = threading.Timer(seconds, end)
    timer.daemon = True
    timer.start()


def run_worker(settings: Settings) -> int:
    """Entry point of `tradegraph worker`: run until SIGTERM/SIGINT, then exit 0.

    A stage that fails ends the process with EXIT_FAILED (a supervisor restarts it); a
    SIGTERM whose batches cannot be finished in time, with EXIT_SHUTDOWN_TIMEOUT."""
    if settings.worker_metrics_port:
        serve_metrics(settings.worker_metrics_host, settings.worker_metrics_port)

    async def main() -> int:
        worker = MatchingWorker(settings)
        loop = asyncio.get_running_loop()

        def stop() -> None:
            if not worker.stopping.is_set():
                worker.stopping.set()
                _exit_after(SHUTDOWN_SECONDS + 5.0, EXIT_SHUTDOWN_TIMEOUT)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        return await worker.run()

    code = asyncio.run(main())
    if code:
        # Whatever still runs (a task that swallowed its cancellation) must not hold the
        # process: the supervisor is waiting for it to end.
        logging.shutdown()
        os._exit(code)
    log.info("matching worker stopped")
    return 0
