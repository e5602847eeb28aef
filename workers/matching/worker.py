"""The matching worker's loop: read commands, match, group-commit, acknowledge, answer.

Three stages run side by side, joined by queues one batch deep:

    matcher:   read up to MAX_BATCH stream entries (pending ones first after a restart)
               → run each through the engine (ids already committed or in flight get
                 their earlier reply) → hand the batch to the committer
    committer: write every row of the batch in ONE PostgreSQL statement, command ids
               included → hand it to the publisher
    publisher: XACK (and trim) the entries — only now, after the commit — reply to the
               callers, update the Redis book cache, publish events.

So the engine matches batch N+2 while PostgreSQL commits batch N+1 and Redis carries batch
N; each stage takes the batches strictly in order. A reply never reports something that
is not committed. If a commit (or what follows it) fails, the engine's state is ahead of
what was acknowledged, so the worker exits and a restart rebuilds it from PostgreSQL and
re-reads the unacknowledged entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
from prometheus_client import Counter as Metric
from prometheus_client import Histogram
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from app.config import Settings
from app.kit.bus import CONSUMER_GROUP
from app.kit.db import plain_url
from app.kit.metrics import serve_metrics
from app.kit.redis import Keys, create_redis
from engine import Command, CommandRejected, Engine, Event, RejectCode
from workers.matching.codec import BadCommand, decode, rejected, reply_for
from workers.matching.publish import publish_events, rebuild_book_cache
from workers.matching.recovery import restore_engine
from workers.matching.store import Batch

log = logging.getLogger(__name__)

CONSUMER = "matching-worker"
MAX_BATCH = 1000
BLOCK_MS = 50
HEARTBEAT_SECONDS = 1.0
HEARTBEAT_TTL = 5
MAX_DELIVERIES = 3
"""An entry delivered this many times without being acknowledged is answered as failed."""

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


def _decode(kind: str, payload_text: str) -> Command | dict[str, Any]:
    """The engine command of a stream entry, or the INVALID_INPUT reply if it has none."""
    try:
        payload = orjson.loads(payload_text)
        if not isinstance(payload, dict):
            raise BadCommand("the payload must be a JSON object")
        return decode(kind, payload)
    except (BadCommand, orjson.JSONDecodeError) as exc:
        return rejected(RejectCode.INVALID_INPUT, str(exc), getattr(exc, "field", None))


def _after(entry_id: str) -> str:
    """The smallest stream id greater than ``entry_id``."""
    millis, sequence = entry_id.split("-")
    return f"{millis}-{int(sequence) + 1}"


def _user_of(command: Command) -> int | None:
    user_id = getattr(command, "user_id", None)
    return user_id if isinstance(user_id, int) else None


@dataclass(slots=True)
class Matched:
    """A batch the engine has run, waiting for its commit."""

    entry_ids: list[str]
    batch: Batch
    events: list[Event]
    replies: dict[str, list[dict[str, Any]]]
    started: float
    risk_ids: list[int] = field(default_factory=list)
    """Filled in by the commit: the ids PostgreSQL gave the batch's risk events."""


class MatchingWorker:
    def __init__(self, settings: Settings) -> None:
        assert settings.database_url and settings.redis_url
        self.settings = settings
        self.keys = Keys(settings.redis_prefix)
        self.redis: Redis = create_redis(settings.redis_url)
        self.stream = self.keys.command_stream()
        self.stopping = asyncio.Event()
        self.engine: Engine | None = None
        self.conn: asyncpg.Connection | None = None
        """The matcher's connection: reads (committed command ids, users)."""
        self.writer: asyncpg.Connection | None = None
        """The committer's connection: one statement per batch."""
        self.known_users: set[int] = set()
        self.in_flight: dict[str, dict[str, Any]] = {}
        """Replies of commands matched but not yet committed, by command id."""
        self.batches: asyncio.Queue[Matched] = asyncio.Queue(maxsize=1)
        """Matched, waiting for the committer."""
        self.committed: asyncio.Queue[Matched] = asyncio.Queue(maxsize=1)
        """Committed, waiting for the publisher."""

    async def _connect(self, **settings: str) -> asyncpg.Connection:
        return await asyncpg.connect(
            plain_url(self.settings.database_url or ""), server_settings=settings
        )

    async def run(self) -> None:
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
        self.engine = await restore_engine(
            self.conn, max_open_orders_per_user=self.settings.max_open_orders_per_user
        )
        await rebuild_book_cache(self.redis, self.keys, self.engine)
        await self._ensure_group()
        log.info("engine restored in %.3fs", time.perf_counter() - started)
        # The restored books are long-lived: keep them out of every collection, and collect
        # the young generation less often (a batch allocates thousands of short-lived
        # events; most die by reference counting, not by the cycle collector).
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)
        heartbeat = asyncio.create_task(self._heartbeat())
        committer = asyncio.create_task(self._committer(), name="committer")
        publisher = asyncio.create_task(self._publisher(), name="publisher")
        try:
            await self._drain_pending()
            while not self.stopping.is_set():
                entries = await self._read(">", block=BLOCK_MS)
                if entries:
                    await self.batches.put(await self._match(entries))
            await self._settle()  # SIGTERM: the batches already matched are completed
        finally:
            for task in (committer, publisher, heartbeat):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.redis.delete(self.keys.worker_heartbeat())
            await self.redis.aclose()
            await self.conn.close()
            await self.writer.close()

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
            single = any(item["times_delivered"] > 1 for item in pending)
            entries = await self._read("0", block=None, count=1 if single else MAX_BATCH)
            if entries:
                # The read is one more delivery of each entry it returned (the oldest ones).
                deliveries = {i["message_id"]: i["times_delivered"] + 1 for i in pending}
                await self.batches.put(await self._match(entries, deliveries=deliveries))
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

    async def _committed(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Replies already given to any of ``ids``: in flight, or committed earlier."""
        assert self.conn is not None
        # In-flight replies first: an id leaves ``in_flight`` only after its commit, so an
        # id missing here is either committed before the query below starts, or new.
        found = {i: self.in_flight[i] for i in ids if i in self.in_flight}
        rest = [i for i in ids if i not in found]
        for row in await self.conn.fetch(
            "SELECT command_id, result FROM processed_commands WHERE command_id = ANY($1)", rest
        ):
            found[row["command_id"]] = orjson.loads(row["result"])
        return found

    async def _match(
        self,
        entries: list[tuple[str, dict[str, str]]],
        *,
        deliveries: dict[str, int] | None = None,
    ) -> Matched:
        """Run a batch of entries through the engine (the matcher stage)."""
        assert self.engine is not None
        started = time.perf_counter()
        ids = [fields.get("id", entry_id) for entry_id, fields in entries]
        # The lookup travels to PostgreSQL while the payloads are decoded here (one yield
        # lets it send its query).
        lookup = asyncio.ensure_future(self._committed(ids))
        await asyncio.sleep(0)
        # Each payload is read once: the user check and the engine share the decoded command.
        decoded = [
            _decode(fields.get("kind", ""), fields.get("payload", "{}")) for _, fields in entries
        ]
        committed = await lookup
        await self._learn_users(decoded)
        poisoned = {
            entry_id for entry_id, count in (deliveries or {}).items() if count > MAX_DELIVERIES
        }
        batch = Batch()
        events: list[Event] = []
        replies: dict[str, list[dict[str, Any]]] = defaultdict(list)
        outcomes: Counter[tuple[str, str]] = Counter()
        for (entry_id, fields), command_id, command in zip(entries, ids, decoded, strict=True):
            kind = fields.get("kind", "")
            if command_id in committed or command_id in batch.results:
                result = committed.get(command_id) or batch.results[command_id]
                outcomes[kind, "replayed"] += 1
            elif entry_id in poisoned:
                result = rejected("INTERNAL", "the worker could not process this command")
                batch.record(command_id, kind, None, result)
                outcomes[kind, "failed"] += 1
            else:
                result, user_id, command_events = self._execute(command)
                batch.add(command_id, command_events)
                batch.record(command_id, kind, user_id, result)
                events.extend(command_events)
                outcomes[kind, "ok" if result["ok"] else "rejected"] += 1
            if fields.get("reply_to"):
                replies[fields["reply_to"]].append({"id": command_id, "result": result})
        for (kind, outcome), count in outcomes.items():
            COMMANDS.labels(kind, outcome).inc(count)
        self.in_flight.update(batch.results)
        entry_ids = [entry_id for entry_id, _ in entries]
        return Matched(entry_ids, batch, events, replies, started)

    async def _committer(self) -> None:
        """Commit the matched batches, one at a time, in order; then hand them on."""
        while True:
            matched = await self.batches.get()
            await self._stage(self._commit, matched)
            await self.committed.put(matched)
            self.batches.task_done()

    async def _publisher(self) -> None:
        """Acknowledge, answer and publish the committed batches, one at a time, in order."""
        while True:
            matched = await self.committed.get()
            await self._stage(self._publish, matched)
            self.committed.task_done()

    @staticmethod
    async def _stage(step: Callable[[Matched], Awaitable[None]], matched: Matched) -> None:
        try:
            await step(matched)
        except Exception:
            # The engine is ahead of what was acknowledged: a restart rebuilds it from
            # PostgreSQL and answers the unacknowledged entries again.
            log.exception("a batch could not be committed or published; exiting to recover")
            os._exit(70)

    async def _commit(self, matched: Matched) -> None:
        assert self.writer is not None
        batch = matched.batch
        if batch:
            commit_started = time.perf_counter()
            matched.risk_ids.extend(await batch.write(self.writer))
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
                pipe, self.keys, matched.events, matched.risk_ids, batch.executed_at.isoformat()
            )
            for channel, channel_replies in matched.replies.items():
                pipe.publish(channel, orjson.dumps({"replies": channel_replies}))
            pipe.xack(self.stream, CONSUMER_GROUP, *matched.entry_ids)
            # Everything before the batch's last entry is acknowledged (batches go in order):
            # trim by id instead of naming every entry again.
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
        self, command: Command | dict[str, Any]
    ) -> tuple[dict[str, Any], int | None, list[Event]]:
        """Run one decoded command; a payload that could not be decoded is its own reply."""
        assert self.engine is not None
        if isinstance(command, dict):
            return command, None, []
        user_id = _user_of(command)
        if user_id is not None and user_id not in self.known_users:
            refusal = CommandRejected(RejectCode.NOT_FOUND, f"no user {user_id}", "user_id")
            return reply_for(command, [refusal]), None, []
        events = self.engine.process(command)
        return reply_for(command, events), user_id, events

    async def _learn_users(self, commands: list[Command | dict[str, Any]]) -> None:
        """Remember which user ids exist (users are created by the API, never deleted)."""
        wanted: set[int] = set()
        for command in commands:
            user_id = None if isinstance(command, dict) else _user_of(command)
            if user_id is not None and user_id not in self.known_users:
                wanted.add(user_id)
        if wanted and self.conn is not None:
            rows = await self.conn.fetch("SELECT id FROM users WHERE id = ANY($1)", list(wanted))
            self.known_users.update(row["id"] for row in rows)

    async def _heartbeat(self) -> None:
        key = self.keys.worker_heartbeat()
        value = orjson.dumps({"pid": os.getpid(), "host": socket.gethostname()})
        while True:
            with contextlib.suppress(Exception):
                await self.redis.set(key, value, ex=HEARTBEAT_TTL)
            await asyncio.sleep(HEARTBEAT_SECONDS)


def run_worker(settings: Settings) -> int:
    """Entry point of `tradegraph worker`: run until SIGTERM/SIGINT, then exit 0."""
    if settings.worker_metrics_port:
        serve_metrics(settings.worker_metrics_host, settings.worker_metrics_port)

    async def main() -> None:
        worker = MatchingWorker(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stopping.set)
        await worker.run()

    asyncio.run(main())
    log.info("matching worker stopped")
    return 0
