"""What runs around every operation, before and after resolvers.

:class:`RequestGuard`, per operation (HTTP request or WebSocket message):

1. before parsing: checks the caller's session (fresh for each operation, so a logout ends
   a WebSocket's access at its next operation) and, in production, adds the
   no-introspection rule for everyone but admins;
2. after validation, before anything executes: refuses the operation with
   ``UNAUTHENTICATED`` (HTTP 401) if the credentials presented are forged, expired or
   logged out, then counts every root field against its rate limit and refuses the whole
   operation with ``RATE_LIMITED`` (HTTP 429, ``Retry-After``) if any is over.

:func:`process_errors` (the schema's error hook) masks unexpected errors — anything that is
not a GraphQL error we or graphql-core raised on purpose — as ``INTERNAL_SERVER_ERROR``
with the request id, logs the original with that id, and in production strips graphql-core's
"Did you mean ...?" suggestions.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    SelectionSetNode,
)
from graphql.utilities import get_operation_ast
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionContext

from graph.context import Context
from graph.errors import (
    GRAPHQL_PARSE_FAILED,
    GRAPHQL_VALIDATION_FAILED,
    INTERNAL_SERVER_ERROR,
    INVALID_INPUT,
    RATE_LIMITED,
    UNAUTHENTICATED,
    ApiError,
)

log = logging.getLogger("tradegraph.graphql")

MASKED_MESSAGE = "Internal server error"
# Strawberry's refusals of a request (an operation type the transport does not carry...).
_EXPECTED = (CannotGetOperationTypeError, InvalidOperationTypeError, MissingQueryError)
_SUGGESTION = " Did you mean"


def root_fields(document: DocumentNode, operation_name: str | None) -> list[str]:
    """The root field names the operation would run (a field named twice counts twice)."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return []
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    names: list[str] = []

    def collect(selection_set: SelectionSetNode, seen: frozenset[str]) -> None:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if selection.name.value != "__typename":
                    names.append(selection.name.value)
            elif isinstance(selection, InlineFragmentNode):
                collect(selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in fragments and name not in seen:
                    collect(fragments[name].selection_set, seen | {name})

    collect(operation.selection_set, frozenset())
    return names


class RequestGuard(SchemaExtension):
    def _context(self) -> Context | None:
        context = self.execution_context.context
        return context if isinstance(context, Context) else None

    async def on_operation(self) -> AsyncIterator[None]:
        context = self._context()
        if context is not None:
            context.begin_operation()
            if context.response is not None:
                context.response.headers["X-Request-ID"] = context.request_id
            authentication = await context.authenticate()
            viewer = authentication.viewer
            if context.services.settings.is_production and not (viewer and viewer.is_admin):
                self.execution_context.validation_rules = (
                    *self.execution_context.validation_rules,
                    NoSchemaIntrospectionCustomRule,
                )
        yield

    async def on_execute(self) -> AsyncIterator[None]:
        context = self._context()
        if context is not None:
            await self._authenticate(context)
            await self._rate_limit(context)
        yield

    async def _authenticate(self, context: Context) -> None:
        authentication = await context.authenticate()
        if authentication.error is not None:
            raise authentication.error
        if authentication.refusal is not None:
            if context.response is not None:
                context.response.status_code = 401
                context.response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            raise ApiError(authentication.refusal, UNAUTHENTICATED)

    async def _rate_limit(self, context: Context) -> None:
        limiter = context.services.rate_limiter
        document = self.execution_context.graphql_document
        if not limiter.enabled or document is None:
            return
        fields = root_fields(document, self.execution_context.operation_name)
        exceeded = await limiter.hit(await context.caller(), fields)
        if exceeded is None:
            return
        if context.response is not None:
            context.response.status_code = 429
            context.response.headers["Retry-After"] = str(exceeded.retry_after)
        raise ApiError(
            exceeded.message,
            RATE_LIMITED,
            field=exceeded.endpoint,
            limitPerMinute=exceeded.limit,
            retryAfter=exceeded.retry_after,
        )


def is_unexpected(error: GraphQLError) -> bool:
    """True unless the error was raised on purpose (by us, Strawberry or graphql-core)."""
    original = error.original_error
    if original is None or isinstance(original, (GraphQLError, *_EXPECTED)):
        return False
    # A variable that failed to coerce: located in the document, not in a resolver.
    return not (error.path is None and error.locations)


def process_errors(errors: list[GraphQLError], execution_context: ExecutionContext | None) -> None:
    context: Any = execution_context.context if execution_context else None
    request_id = context.request_id if isinstance(context, Context) else None
    production = isinstance(context, Context) and context.services.settings.is_production
    for error in errors:
        if (error.extensions or {}).get("code") == INTERNAL_SERVER_ERROR:
            continue  # already masked (results can pass through twice)
        if is_unexpected(error):
            original = error.original_error
            assert original is not None
            log.error(
                "unexpected error [request %s] at %s: %s",
                request_id,
                ".".join(str(part) for part in error.path or ()) or "(operation)",
                original,
                exc_info=(type(original), original, original.__traceback__),
            )
            error.message = MASKED_MESSAGE
            error.extensions = {"code": INTERNAL_SERVER_ERROR, "requestId": request_id}
        else:
            if production and _SUGGESTION in error.message:
                error.message = error.message.split(_SUGGESTION)[0].strip()
            if error.path is None and not (error.extensions or {}).get("code"):
                error.extensions = {**(error.extensions or {}), "code": _request_error_code(error)}


def _request_error_code(error: GraphQLError) -> str:
    """A code for errors about the document itself (raised before any resolver ran)."""
    if error.message.startswith("Syntax Error"):
        return GRAPHQL_PARSE_FAILED
    if error.original_error is None:
        return GRAPHQL_VALIDATION_FAILED
    return INVALID_INPUT  # a variable whose value does not fit its type
