"""Relay connections over keyset pages (``id DESC``), for every list that grows.

A resolver turns ``first``/``after`` into a :class:`~app.kit.pagination.PageRequest` with
:func:`page_request` (bad values are a top-level ``INVALID_INPUT`` error), asks its service
for a page, and wraps it with :func:`connection`::

    page = await services.users.list(page_request(first, after))
    return connection(page, User.from_row)

Cursors are opaque (base64 of ``v1:<id>``); clients must not build them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import strawberry

from app.kit.pagination import Page, PageRequest
from graph.errors import invalid_input

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
_PREFIX = "v1:"
_MAX_ID = 2**63 - 1

NodeT = TypeVar("NodeT")
RowT = TypeVar("RowT", bound="HasId")


class HasId(Protocol):
    @property
    def id(self) -> int: ...


@strawberry.type(description="Where a page sits in its list.")
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[NodeT]):
    node: NodeT
    cursor: str


@strawberry.type(description="One page of a list, newest first.")
class Connection(Generic[NodeT]):
    edges: list[Edge[NodeT]]
    page_info: PageInfo


def encode_cursor(row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{row_id}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode()
    except (binascii.Error, UnicodeError, ValueError):
        text = ""
    number = text.removeprefix(_PREFIX)
    valid = text.startswith(_PREFIX) and number.isascii() and number.isdigit()
    if not valid or len(number) > 19 or int(number) > _MAX_ID:
        raise invalid_input("`after` is not a cursor from this list", "after")
    return int(number)


def page_request(first: int, after: str | None) -> PageRequest:
    if not 1 <= first <= MAX_PAGE_SIZE:
        raise invalid_input(f"`first` must be between 1 and {MAX_PAGE_SIZE}", "first")
    return PageRequest(limit=first, after_id=decode_cursor(after) if after else None)


def connection(
    page: Page[RowT], to_node: Callable[[RowT], NodeT], *, after: str | None = None
) -> Connection[NodeT]:
    edges = [Edge(node=to_node(row), cursor=encode_cursor(row.id)) for row in page.items]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next,
            has_previous_page=after is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )
