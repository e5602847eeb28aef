"""Errors, both kinds.

- Expected outcomes of a mutation are data: ``errors: [UserError!]!`` on its payload, each
  with an :class:`ErrorCode`, the input field at fault and a message.
- Refusals of the request itself are top-level GraphQL errors with ``extensions.code``:
  :data:`UNAUTHENTICATED`, :data:`FORBIDDEN`, :data:`RATE_LIMITED`, :data:`INVALID_INPUT`
  (bad arguments or variables), :data:`NOT_FOUND` (a query argument names nothing, such
  as an unknown market's symbol), :data:`GRAPHQL_PARSE_FAILED` and
  :data:`GRAPHQL_VALIDATION_FAILED` (the document itself: syntax, unknown fields, depth,
  aliases, tokens), :data:`SLOW_CONSUMER` (a ``myOrders`` / ``myFills`` stream over HTTP
  whose reader fell behind; over a WebSocket that is close 4480 instead), and
  :data:`INTERNAL_SERVER_ERROR` for anything unexpected (masked, with a ``requestId`` that
  is in the server log).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any

import strawberry
from graphql import GraphQLError

from app.kit.errors import Problem

UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"
RATE_LIMITED = "RATE_LIMITED"
INVALID_INPUT = "INVALID_INPUT"
NOT_FOUND = "NOT_FOUND"
INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
SLOW_CONSUMER = "SLOW_CONSUMER"


@strawberry.enum(description="Why a mutation was refused.")
class ErrorCode(Enum):
    INVALID_INPUT = "INVALID_INPUT"
    NOT_FOUND = "NOT_FOUND"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    KYC_REQUIRED = "KYC_REQUIRED"
    MARKET_HALTED = "MARKET_HALTED"
    RISK_REJECTED = "RISK_REJECTED"
    POST_ONLY_WOULD_TAKE = "POST_ONLY_WOULD_TAKE"
    ORDER_NOT_OPEN = "ORDER_NOT_OPEN"
    EMAIL_TAKEN = "EMAIL_TAKEN"
    USERNAME_TAKEN = "USERNAME_TAKEN"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    LOGIN_LOCKED = "LOGIN_LOCKED"
    TIMEOUT = "TIMEOUT"
    INTERNAL = "INTERNAL"


@strawberry.type(description="An expected refusal: what went wrong, and with which input.")
class UserError:
    code: ErrorCode
    field: str | None = strawberry.field(
        description="The input field at fault (camelCase), or null for the whole input."
    )
    message: str

    @classmethod
    def from_problem(cls, problem: Problem) -> UserError:
        return cls(code=ErrorCode(problem.code), field=problem.field, message=problem.message)


def user_errors(problems: Iterable[Problem]) -> list[UserError]:
    return [UserError.from_problem(problem) for problem in problems]


class ApiError(GraphQLError):
    """A top-level error we raise on purpose; its message is meant for the client."""

    def __init__(self, message: str, code: str, **extensions: Any) -> None:
        super().__init__(message, extensions={"code": code, **extensions})


def unauthenticated(message: str = "you must be logged in") -> ApiError:
    return ApiError(message, UNAUTHENTICATED)


def slow_consumer(message: str) -> ApiError:
    """A private stream's subscriber fell too far behind (over a WebSocket: close 4480)."""
    return ApiError(message, SLOW_CONSUMER)


def forbidden(message: str = "you are not allowed to do this") -> ApiError:
    return ApiError(message, FORBIDDEN)


def invalid_input(message: str, argument: str) -> ApiError:
    return ApiError(message, INVALID_INPUT, argument=argument)


def not_found(message: str, argument: str) -> ApiError:
    return ApiError(message, NOT_FOUND, argument=argument)
