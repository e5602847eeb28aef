"""Every query about orders, trades and fills (read-only: the worker writes them)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.pagination import Page, PageRequest, keyset_page
from app.orders.models import Order, Trade


async def get_order(session: AsyncSession, user_id: int, order_id: int) -> Order | None:
    order = await session.get(Order, order_id)
    return order if order is not None and order.user_id == user_id else None


async def get_order_by_client_id(
    session: AsyncSession, user_id: int, client_order_id: str
) -> Order | None:
    result = await session.execute(
        select(Order).where(Order.user_id == user_id, Order.client_order_id == client_order_id)
    )
    return result.scalar_one_or_none()


async def orders_by_ids(session: AsyncSession, ids: Sequence[int]) -> Sequence[Order]:
    result = await session.execute(select(Order).where(Order.id.in_(ids)))
    return result.scalars().all()


async def list_orders(
    session: AsyncSession,
    user_id: int,
    request: PageRequest,
    *,
    symbol: str | None = None,
    statuses: Sequence[str] | None = None,
) -> Page[Order]:
    statement = select(Order).where(Order.user_id == user_id)
    if symbol:
        statement = statement.where(Order.symbol == symbol)
    if statuses:
        statement = statement.where(Order.status.in_(statuses))
    return await keyset_page(session, statement, Order.id, request)


async def list_trades(session: AsyncSession, symbol: str, request: PageRequest) -> Page[Trade]:
    statement = select(Trade).where(Trade.symbol == symbol)
    return await keyset_page(session, statement, Trade.id, request)


async def list_fills(
    session: AsyncSession, user_id: int, request: PageRequest, *, symbol: str | None = None
) -> Page[Trade]:
    statement = select(Trade).where(
        or_(Trade.buyer_user_id == user_id, Trade.seller_user_id == user_id)
    )
    if symbol:
        statement = statement.where(Trade.symbol == symbol)
    return await keyset_page(session, statement, Trade.id, request)


async def trades_by_ids(session: AsyncSession, ids: Sequence[int]) -> Sequence[Trade]:
    result = await session.execute(select(Trade).where(Trade.id.in_(ids)).order_by(Trade.id))
    return result.scalars().all()
