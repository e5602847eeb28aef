"""Expected refusals, shared by every domain: a code, the input field at fault, a message.

Every refusal is one or more :class:`Problem`, which the GraphQL layer turns into the
payload's ``errors: [{code field message}]`` (they are data, not failures). Two ways carry
them today: the accounts and risk services raise :class:`Refused` (``AccountError`` is one),
which their mutations catch; the orders, balances and markets services, whose answers come
from the matching worker, return them instead (``Outcome.problems``,
``FundsOutcome.problems``, the problems ``MarketService.set_halted`` returns);
:func:`app.kit.commands.dispatch` hands them the worker's refusal as a ``Problem``.
Each domain spells its codes in its own ``errors.py``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    code: str
    message: str
    field: str | None = None


class Refused(ValueError):
    """An operation was refused for reasons the caller can fix; ``problems`` says which."""

    def __init__(self, *problems: Problem) -> None:
        assert problems, "a refusal needs at least one problem"
        super().__init__("; ".join(problem.message for problem in problems))
        self.problems: tuple[Problem, ...] = problems
