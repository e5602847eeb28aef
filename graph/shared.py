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


class SharedEventExecution(StrawberryGraphQLCoreExecutionContext):
    """The schema's executor: Strawberry's, with the per-event result of a shared event
    computed once per operation."""

    def execute_operation(self, serially: bool | None = None) -> Any:
        memo: dict[tuple[str, str | None, str], Any] | None = getattr(self.root_value, _MEMO, None)
        location = self.operation.loc
        if memo is None or location is None:
            return super().execute_operation(serially)
        name = self.operation.name.value if self.operation.name else None
        key = (location.source.body, name, repr(sorted(self.variable_values.coerced.items())))
        result = memo.get(key)
        if result is None:
            result = super().execute_operation(serially)
            if isinstance(result, ExecutionResult) and not result.errors:
                memo[key] = result
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
