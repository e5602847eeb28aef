"""Subscription events that many subscribers receive, executed once for all of them.

A book update goes to every subscriber of a depth view: the same object, the same fields.
Strawberry would run the selection set once per subscriber. An event marked with
:func:`shared` is executed once per distinct operation (the document's text, the operation
name and the variables) and the result reused for every subscriber that sent the same
operation; :func:`encoded` then writes its JSON once (app/asgi.py sends it to each).

Only events whose fields depend on nothing but the event may be marked: no field of theirs
reads the context (the user, permissions).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, TypeVar

from graphql import ExecutionResult
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

T = TypeVar("T")

_MEMO = "_tradegraph_shared_results"


def shared(event: T) -> T:
    """Mark ``event`` as one whose execution may be shared (idempotent)."""
    if getattr(event, _MEMO, None) is None:
        setattr(event, _MEMO, {})
    return event


class _Answered:
    """A per-event executor for a shared event already executed for this operation: its
    result, without copying the executor again."""

    __slots__ = ("result",)

    def __init__(self, result: ExecutionResult) -> None:
        self.result = result

    def execute_operation(self, serially: bool | None = None) -> ExecutionResult:
        return self.result


class SharedEventExecution(StrawberryGraphQLCoreExecutionContext):
    """The schema's executor: Strawberry's, with the per-event result of a shared event
    computed once per operation."""

    def _shared_key(self) -> tuple[str, str | None, str] | None:
        location = self.operation.loc
        if location is None:
            return None
        name = self.operation.name.value if self.operation.name else None
        return (location.source.body, name, repr(sorted(self.variable_values.coerced.items())))

    def build_per_event_executor(self, payload: Any) -> Any:
        memo: dict[tuple[str, str | None, str], ExecutionResult] | None = getattr(
            payload, _MEMO, None
        )
        if memo:
            key = self._shared_key()
            if key is not None and (result := memo.get(key)) is not None:
                return _Answered(result)
        return super().build_per_event_executor(payload)

    def execute_operation(self, serially: bool | None = None) -> Any:
        memo: dict[tuple[str, str | None, str], ExecutionResult] | None = getattr(
            self.root_value, _MEMO, None
        )
        key = self._shared_key() if memo is not None else None
        if memo is None or key is None:
            return super().execute_operation(serially)
        result = memo.get(key)
        if result is None:
            executed = super().execute_operation(serially)
            if isinstance(executed, ExecutionResult) and not executed.errors:
                memo[key] = executed
            return executed
        return result


_ENCODED: OrderedDict[int, tuple[object, str]] = OrderedDict()
_ENCODED_KEEP = 64


def encoded(data: object) -> str:
    """``json.dumps(data)``, written once for the same object however often it is sent
    (the last few objects are remembered, and held so that their ids stay theirs)."""
    key = id(data)
    hit = _ENCODED.get(key)
    if hit is not None and hit[0] is data:
        return hit[1]
    text = json.dumps(data, separators=(",", ":"))
    _ENCODED[key] = (data, text)
    if len(_ENCODED) > _ENCODED_KEEP:
        _ENCODED.popitem(last=False)
    return text
