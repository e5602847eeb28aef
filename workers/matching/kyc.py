"""Who may trade: the KYC status of every user, held by the matching worker.

The worker is the single writer of ``users.kyc_status`` once it runs: an admin's approval
or rejection is a ``set_kyc`` command it commits (in the batch's one statement) before it
answers, so the next order of that user - through any API process - meets the new status.
At start it loads every user's status; a user created later (sign-up writes the row
directly, as pending) is read the first time one of their commands arrives.

A rejected user keeps their resting orders (they may still fill) and can always cancel;
only new orders (single or in a batch) are refused, with ``KYC_REQUIRED``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

KYC_REQUIRED = "KYC_REQUIRED"
KYC_MESSAGE = "trading needs approved KYC (identity check)"


@dataclass
class KycBook:
    """Known user ids and which of them are approved."""

    known: set[int] = field(default_factory=set)
    approved: set[int] = field(default_factory=set)

    def may_trade(self, user_id: int) -> bool:
        return user_id in self.approved

    def record(self, user_id: int, status: str) -> None:
        self.known.add(user_id)
        if status == "approved":
            self.approved.add(user_id)
        else:
            self.approved.discard(user_id)

    async def learn(self, conn: asyncpg.Connection, user_ids: set[int]) -> None:
        """Read the users not seen yet (users are created by the API, never deleted)."""
        wanted = [user_id for user_id in user_ids if user_id not in self.known]
        if not wanted:
            return
        rows = await conn.fetch("SELECT id, kyc_status FROM users WHERE id = ANY($1)", wanted)
        for row in rows:
            self.record(row["id"], row["kyc_status"])


async def load_kyc(conn: asyncpg.Connection) -> KycBook:
    """Every user and their status (at the worker's start)."""
    book = KycBook()
    for row in await conn.fetch("SELECT id, kyc_status FROM users"):
        book.record(row["id"], row["kyc_status"])
    return book
