"""Input checks for every argument of every field, so new fields are covered by themselves.

:class:`InputGuard` refuses, with a top-level ``INVALID_INPUT`` error whose
``extensions.argument`` names the argument (``input.price``, ``symbol``...):

1. before anything executes (queries, mutations and subscriptions alike): any string in the
   variables or in the document's literals that PostgreSQL cannot store — a NUL, or a lone
   UTF-16 surrogate (``"\\ud800"`` in JSON) — or that is longer than :data:`MAX_TEXT`
   characters. No column takes more; each field may refuse shorter ones itself.
2. just before a resolver runs: an argument its scalar refused (an :class:`InvalidValue`,
   from the strict ``Decimal`` scalar in ``graph/scalars.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from graphql import (
    ArgumentNode,
    DocumentNode,
    GraphQLResolveInfo,
    ObjectFieldNode,
    StringValueNode,
    VariableDefinitionNode,
    VariableNode,
    Visitor,
    visit,
)
from strawberry.extensions import SchemaExtension

from app.kit.db import storable
from graph.errors import invalid_input
from graph.scalars import InvalidValue

MAX_TEXT = 256
"""The longest string any argument takes (emails 255, passwords 256; most take far fewer)."""


def text_problem(value: str) -> str | None:
    """Why PostgreSQL (or our columns) could not take ``value``, or ``None``."""
    if len(value) > MAX_TEXT:
        return f"at most {MAX_TEXT} characters"
    if storable(value):
        return None
    if "\x00" in value:
        return "contains a NUL character"
    return "contains a lone surrogate (not a Unicode character)"


def _walk(value: object, path: str) -> Iterator[tuple[str, object]]:
    """Every leaf of a JSON-like value, with its dotted path (iterative: JSON may be deep)."""
    stack: list[tuple[str, object]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, Mapping):
            stack.extend((f"{where}.{key}", child) for key, child in reversed(list(item.items())))
        elif isinstance(item, (list, tuple)):
            stack.extend(
                (f"{where}.{index}", child) for index, child in reversed(list(enumerate(item)))
            )
        else:
            yield where, item


class _Document(Visitor):
    """One pass over the document: the first string literal :func:`text_problem` refuses,
    and the argument each variable is used for (so errors name the argument)."""

    def __init__(self) -> None:
        super().__init__()
        self.bad_literal: tuple[str, str] | None = None
        self.argument_of: dict[str, str] = {}

    def enter_string_value(
        self, node: StringValueNode, key: Any, parent: Any, path: Any, ancestors: list[Any]
    ) -> object:
        problem = text_problem(node.value)
        if problem is not None and self.bad_literal is None:
            self.bad_literal = (_argument_path([*ancestors, parent]), problem)
        return None

    def enter_variable(
        self, node: VariableNode, key: Any, parent: Any, path: Any, ancestors: list[Any]
    ) -> object:
        if not isinstance(parent, VariableDefinitionNode):
            self.argument_of.setdefault(node.name.value, _argument_path([*ancestors, parent]))
        return None


def _argument_path(ancestors: list[Any]) -> str:
    names: list[str] = []
    for node in ancestors:
        if isinstance(node, (ArgumentNode, ObjectFieldNode)):
            names.append(node.name.value)
        elif isinstance(node, VariableDefinitionNode):
            names.append(node.variable.name.value)
    return ".".join(names) or "(document)"


# What one pass over a document found, by the document's id (the document is kept with it,
# so the id cannot be reused): documents come from the parse cache, so the same document
# object comes back for the same text, and the pass is made once. Emptied when full.
_SEEN: dict[int, tuple[DocumentNode, _Document]] = {}
_SEEN_SIZE = 1024


def _document_facts(document: DocumentNode) -> _Document:
    seen = _SEEN.get(id(document))
    if seen is not None and seen[0] is document:
        return seen[1]
    found = _Document()
    visit(document, found)
    if len(_SEEN) >= _SEEN_SIZE:
        _SEEN.clear()
    _SEEN[id(document)] = (document, found)
    return found


def check_strings(document: DocumentNode | None, variables: Mapping[str, object] | None) -> None:
    """Refuse the first string, literal or in a variable, that :func:`text_problem` refuses."""
    found = _Document() if document is None else _document_facts(document)
    if found.bad_literal is not None:
        where, refusal = found.bad_literal
        raise invalid_input(f"`{where}` {refusal}", where)
    for name, value in (variables or {}).items():
        argument = found.argument_of.get(name, name)
        for path, leaf in _walk(value, argument):
            if isinstance(leaf, str) and (problem := text_problem(leaf)):
                raise invalid_input(f"`{path}` {problem}", path)


def check_arguments(arguments: Mapping[str, object]) -> None:
    for name, value in arguments.items():
        for path, leaf in _walk(value, name):
            if isinstance(leaf, InvalidValue):
                raise invalid_input(f"`{path}`: {leaf.message}", path)


class InputGuard(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        # A plain generator: an async hook costs Strawberry an async generator per request.
        check_strings(self.execution_context.graphql_document, self.execution_context.variables)
        yield

    def resolve(
        self,
        _next: Callable[..., object],
        root: object,
        info: GraphQLResolveInfo[Any],
        *args: Any,
        **kwargs: Any,
    ) -> object:
        if kwargs:
            check_arguments(kwargs)
        return _next(root, info, *args, **kwargs)
