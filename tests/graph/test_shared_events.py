"""graph/shared.py: an event marked shared is executed once per operation, whatever the
number of subscribers; an unmarked one once per subscriber; and its JSON is written once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import strawberry

from graph.shared import SharedEventExecution, encoded, shared

CALLS: list[str] = []


@strawberry.type
class Event:
    value: int

    @strawberry.field
    def doubled(self, times: int = 2) -> int:
        CALLS.append(f"doubled×{times}")
        return self.value * times


EVENTS: asyncio.Queue[Event] | None = None


@strawberry.type
class Query:
    ok: bool = True


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def events(self, count: int) -> AsyncGenerator[Event, None]:
        for _ in range(count):
            assert EVENTS is not None
            yield await EVENTS.get()


schema = strawberry.Schema(
    query=Query, subscription=Subscription, execution_context_class=SharedEventExecution
)


async def _collect(document: str, count: int) -> list[dict[str, Any] | None]:
    stream = await schema.subscribe(document)
    assert not isinstance(stream, strawberry.types.ExecutionResult)
    out: list[dict[str, Any] | None] = []
    async for result in stream:
        assert not result.errors, result.errors
        out.append(result.data)
        if len(out) == count:
            break
    return out


def test_a_shared_event_is_executed_once_per_operation() -> None:
    async def scenario() -> None:
        global EVENTS
        first = "subscription { events(count: 1) { value doubled } }"
        other = "subscription { events(count: 1) { value doubled(times: 3) } }"
        for marked, expected in ((True, 2), (False, 4)):
            CALLS.clear()
            subscribers = [first, first, first, other]
            queues = [asyncio.Queue[Event]() for _ in subscribers]
            event = Event(value=7)
            if marked:
                shared(event)
            results = []
            for document, queue in zip(subscribers, queues, strict=True):
                EVENTS = queue
                queue.put_nowait(event)
                results.append(await _collect(document, 1))
            assert results == [
                [{"events": {"value": 7, "doubled": 14}}],
                [{"events": {"value": 7, "doubled": 14}}],
                [{"events": {"value": 7, "doubled": 14}}],
                [{"events": {"value": 7, "doubled": 21}}],
            ]
            assert len(CALLS) == expected, CALLS  # shared: one per distinct operation

    asyncio.run(scenario())


def test_encoded_writes_the_same_object_once() -> None:
    data = {"a": [1, "x"]}
    text = encoded(data)
    assert text == '{"a":[1,"x"]}'
    assert encoded(data) is text
    other = {"a": [1, "x"]}
    assert (encoded(other) == text and encoded(other) is not text) or other is data
