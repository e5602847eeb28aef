"""Keyset pagination on ``id DESC``: newest first, stable while rows are added.

A page asks for ``limit`` rows with ids below ``after_id``; one extra row is fetched to know
whether another page follows. The GraphQL layer (``graph/pagination.py``) wraps this in Relay
connections with opaque cursors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PageRequest:
    limit: int
    after_id: int | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    has_next: bool


async def keyset_page(
    session: AsyncSession,
    statement: Select[Any],
    id_column: InstrumentedAttribute[Any],
    request: PageRequest,
) -> Page[T]:
    """Run ``statement`` (already filtered) for one page, newest ``id`` first."""
    if request.after_id is not None:
        statement = statement.where(id_column < request.after_id)
    statement = statement.order_by(id_column.desc()).limit(request.limit + 1)
    rows: Sequence[T] = (await session.execute(statement)).scalars().all()
    return Page(items=rows[: request.limit], has_next=len(rows) > request.limit)
