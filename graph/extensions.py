"""What runs around every operation, before and after resolvers.

:class:`DocumentCache` parses each distinct document text once and validates it once per
set of rules, keeping the :data:`CACHE_SIZE` most recently used (the counts of hits and
misses are the ``tradegraph_graphql_cache_{hits,misses}_total`` metrics).

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
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    SelectionSetNode,
    parse,
)
from graphql.utilities import get_operation_ast
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import SchemaExtension
from strawberry.extensions.max_aliases import create_validator as aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.schema.schema import validate_document
from strawberry.types import ExecutionContext

from app.kit.metrics import GRAPHQL_CACHE_HITS, GRAPHQL_CACHE_MISSES
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

MAX_DEPTH = 12
MAX_ALIASES = 30
MAX_TOKENS = 5_000
# Distinct documents kept parsed and validated; bounded so unique queries cannot grow memory.
CACHE_SIZE = 512
# The depth and alias rules, made once: Strawberry's QueryDepthLimiter and MaxAliasesLimiter
# extensions make a new rule class per request, so no validation result could be reused.
LIMIT_RULES: tuple[type[ASTValidationRule], ...] = (
    depth_rule(MAX_DEPTH, should_ignore=None),
    aliases_rule(MAX_ALIASES),
)

_PARSE_HITS = GRAPHQL_CACHE_HITS.labels("parse")
_PARSE_MISSES = GRAPHQL_CACHE_MISSES.labels("parse")
_VALIDATE_HITS = GRAPHQL_CACHE_HITS.labels("validate")
_VALIDATE_MISSES = GRAPHQL_CACHE_MISSES.labels("validate")


@dataclass(slots=True)
class _Parsed:
    document: DocumentNode
    # Validation errors (usually none) by the rules they were validated with.
    validated: dict[tuple[type[ASTValidationRule], ...], list[GraphQLError]] = field(
        default_factory=dict
    )


class Documents:
    """Parsed documents by their text, the least recently used dropped past ``maxsize``.

    Keyed by the text, not the parsed document: a parsed document is a frozen dataclass
    whose hash walks the whole tree, on every lookup (Strawberry's ValidationCache key)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._parsed: OrderedDict[str, _Parsed] = OrderedDict()

    def parsed(self, query: str) -> _Parsed:
        found = self._parsed.get(query)
        if found is not None:
            self._parsed.move_to_end(query)
            _PARSE_HITS.inc()
            return found
        _PARSE_MISSES.inc()
        found = _Parsed(parse(query, max_tokens=MAX_TOKENS))  # a syntax error is not kept
        self._parsed[query] = found
        if len(self._parsed) > self.maxsize:
            self._parsed.popitem(last=False)
        return found

    def clear(self) -> None:
        self._parsed.clear()


DOCUMENTS = Documents(CACHE_SIZE)


class DocumentCache(SchemaExtension):
    """Parsing (at most :data:`MAX_TOKENS` tokens) and validation (with the depth and alias
    limits added to the rules), each done once per document text: :data:`DOCUMENTS`."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        assert context.query  # Strawberry refuses an operation without one before parsing
        self._parsed = DOCUMENTS.parsed(context.query)
        context.graphql_document = self._parsed.document
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        rules = context.validation_rules + LIMIT_RULES
        validated = self._parsed.validated
        errors = validated.get(rules)
        if errors is None:
            _VALIDATE_MISSES.inc()
            errors = validated[rules] = validate_document(
                context.schema._schema, self._parsed.document, rules
            )
        else:
            _VALIDATE_HITS.inc()
        context.pre_execution_errors = errors
        yield


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
