"""Expected refusals, shared by every domain: a code, the input field at fault, a message.

Services raise :class:`Refused` with one or more :class:`Problem`; the GraphQL layer turns
them into the payload's ``errors: [{code field message}]`` (they are data, not failures).
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
