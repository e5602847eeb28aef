"""One command to the matching worker, its answer as data: the reply, or a Problem.

Every service that asks the worker for something (trading, funds, halts, fee tiers) goes
through :func:`dispatch`, so a timeout and a refusal read the same everywhere.
"""

from __future__ import annotations

from app import wire
from app.kit.bus import CommandBus, CommandBusUnavailable, CommandTimeout
from app.kit.errors import Problem

TIMEOUT = "TIMEOUT"
INVALID_INPUT = "INVALID_INPUT"
INTERNAL = "INTERNAL"

# The engine's and worker's codes, as the API reports them.
WORKER_CODES = {
    "INVALID_INPUT": INVALID_INPUT,
    "INSUFFICIENT_BALANCE": "INSUFFICIENT_BALANCE",
    "MARKET_HALTED": "MARKET_HALTED",
    "RISK_REJECTED": "RISK_REJECTED",
    "POST_ONLY_WOULD_TAKE": "POST_ONLY_WOULD_TAKE",
    "NOT_FOUND": "NOT_FOUND",
    "ORDER_NOT_OPEN": "ORDER_NOT_OPEN",
    "KYC_REQUIRED": "KYC_REQUIRED",  # the worker holds who may trade
    "UNKNOWN_SYMBOL": INVALID_INPUT,
    "INTERNAL": INTERNAL,  # the worker could not process the command: nothing was applied
}


def camel(name: str | None) -> str | None:
    """The worker's snake_case field name as the API's camelCase input name."""
    if name is None:
        return None
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def problem(error: wire.Error) -> Problem:
    """The worker's refusal as the API reports it (an unknown code is INTERNAL: the worker
    knows something this process does not)."""
    return Problem(WORKER_CODES.get(error.code, INTERNAL), error.message, camel(error.field))


async def dispatch(
    bus: CommandBus,
    command: wire.Command,
    *,
    timeout: float,  # noqa: ASYNC109 - the caller's deadline for the reply
    command_id: str | None = None,
) -> wire.Reply | Problem:
    try:
        reply = await bus.send(command, command_id=command_id, timeout=timeout)
    except CommandBusUnavailable:
        return Problem(
            TIMEOUT,
            "the command bus is unreachable for now; a retry with the same clientOrderId or "
            "idempotency key is safe",
        )
    except CommandTimeout:
        return Problem(
            TIMEOUT,
            "the matching engine did not answer in time; a retry with the same "
            "clientOrderId or idempotency key is safe",
        )
    if not reply.ok:
        assert reply.error is not None
        return problem(reply.error)
    return reply
