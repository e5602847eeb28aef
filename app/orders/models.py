from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.orm import Base


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    symbol: Mapped[str] = mapped_column(String(20))
    side: Mapped[str] = mapped_column(String(4))
    type: Mapped[str] = mapped_column(String(10))
    quantity: Mapped[Decimal]
    price: Mapped[Decimal | None]
    filled_quantity: Mapped[Decimal] = mapped_column(server_default="0")
    status: Mapped[str] = mapped_column(String(20), server_default="PENDING")
    client_order_id: Mapped[str | None] = mapped_column(String(64))
    time_in_force: Mapped[str] = mapped_column(String(3), server_default="GTC")
    post_only: Mapped[bool] = mapped_column(server_default="false")
    priority: Mapped[int | None] = mapped_column(BigInteger)
    cancel_reason: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(server_default="now()")
    updated_at: Mapped[datetime] = mapped_column(server_default="now()")


class Trade(Base):
    __tablename__ = "trades"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    symbol: Mapped[str] = mapped_column(String(20))
    buyer_order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    seller_order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    quantity: Mapped[Decimal]
    price: Mapped[Decimal]
    buyer_fee: Mapped[Decimal]
    seller_fee: Mapped[Decimal]
    buyer_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    seller_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    taker_side: Mapped[str] = mapped_column(String(4))
    executed_at: Mapped[datetime] = mapped_column(server_default="now()")
