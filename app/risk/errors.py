"""Why a risk operation was refused."""

from __future__ import annotations

from enum import StrEnum


class RiskErrorCode(StrEnum):
    NOT_FOUND = "NOT_FOUND"
    INVALID_INPUT = "INVALID_INPUT"
