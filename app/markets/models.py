from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.orm import Base


class Market(Base):
    __tablename__ = "markets"

    symbol: Mapped[str] = mapped_column(String(20), primary_key=True)
    base_asset: Mapped[str] = mapped_column(String(20))
    quote_asset: Mapped[str] = mapped_column(String(20))
    tick_size: Mapped[Decimal]
    lot_size: Mapped[Decimal]
    min_notional: Mapped[Decimal]
    status: Mapped[str] = mapped_column(String(10))
    halt_reason: Mapped[str | None] = mapped_column(Text)
    book_sequence: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class FeeTier(Base):
    __tablename__ = "fee_tiers"

    tier: Mapped[int] = mapped_column(primary_key=True)
    maker_rate: Mapped[Decimal] = mapped_column(Numeric(10, 6))
    taker_rate: Mapped[Decimal] = mapped_column(Numeric(10, 6))
    min_volume_30d: Mapped[Decimal] = mapped_column(Numeric(30, 8))
