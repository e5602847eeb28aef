"""The declarative base every model shares. The schema itself is owned by migrations/."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import Numeric
from sqlalchemy.orm import DeclarativeBase

# DECIMAL(20,8): every amount column in the seed's schema.
Money = Numeric(20, 8, asdecimal=True)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {Decimal: Money}
