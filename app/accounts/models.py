from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Computed, ForeignKey, Numeric, String
from sqlalchemy.dialects.postgresql import INET
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.orm import Base


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    username: Mapped[str | None] = mapped_column(String(50), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    kyc_status: Mapped[str] = mapped_column(String(50), server_default="pending")
    fee_tier: Mapped[int] = mapped_column(server_default="1")
    fee_tier_override: Mapped[bool] = mapped_column(server_default="false")
    role: Mapped[str] = mapped_column(String(20), server_default="user")
    created_at: Mapped[datetime] = mapped_column(server_default="now()")
    updated_at: Mapped[datetime] = mapped_column(server_default="now()")


class Balance(Base):
    __tablename__ = "balances"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    asset: Mapped[str] = mapped_column(String(20))
    available: Mapped[Decimal] = mapped_column(server_default="0")
    locked: Mapped[Decimal] = mapped_column(server_default="0")
    created_at: Mapped[datetime] = mapped_column(server_default="now()")
    updated_at: Mapped[datetime] = mapped_column(server_default="now()")


class LedgerEntry(Base):
    """Append-only: the database refuses UPDATE and DELETE on this table."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    asset: Mapped[str] = mapped_column(String(20))
    available_delta: Mapped[Decimal]
    locked_delta: Mapped[Decimal]
    amount: Mapped[Decimal] = mapped_column(
        Numeric(21, 8), Computed("available_delta + locked_delta", persisted=True)
    )
    reason: Mapped[str] = mapped_column(String(20))
    reference: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(server_default="now()")


class LoginIp(Base):
    """An address a user has logged in (or signed up) from (migration 0010)."""

    __tablename__ = "login_ips"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    ip: Mapped[str] = mapped_column(INET, primary_key=True)
    first_seen: Mapped[datetime] = mapped_column(server_default="now()")
    last_seen: Mapped[datetime] = mapped_column(server_default="now()")
    count: Mapped[int] = mapped_column(server_default="1")
