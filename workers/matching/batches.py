"""A market maker's batch: many orders (or cancels) in one command, one reply.

The entries run through the engine in order, inside the one command: they are committed
in the same group commit (one transaction) and answered together, each with its own
outcome - one refused entry does not stop the others. A retried batch places nothing twice
for entries that name a ``client_order_id`` (the engine answers those with the original
order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.wire import MAX_BATCH_ENTRIES
from engine import CancelOrder, Engine, Event, PlaceOrder, RejectCode
from workers.matching.codec import BadCommand, decode, rejected, reply_for
from workers.matching.kyc import KYC_MESSAGE, KYC_REQUIRED, KycBook, user_id_of

Reply = dict[str, Any]


@dataclass(frozen=True, slots=True)
class PlaceBatch:
    user_id: int
    orders: list[PlaceOrder | Reply]
    """Each entry decoded, or the INVALID_INPUT reply of an entry that could not be."""


@dataclass(frozen=True, slots=True)
class CancelBatch:
    user_id: int
    cancels: list[CancelOrder | Reply]


def _entries(payload: dict[str, Any]) -> list[Any]:
    entries = payload.get("entries")
    if type(entries) is not list or len(entries) > MAX_BATCH_ENTRIES:
        raise BadCommand(f"entries is a list of at most {MAX_BATCH_ENTRIES}", "entries")
    return entries


def _entry(kind: str, user_id: int, entry: object) -> Any:
    try:
        if not isinstance(entry, dict):
            raise BadCommand("each entry is a JSON object")
        return decode(kind, {**entry, "user_id": user_id})
    except BadCommand as exc:
        return rejected(RejectCode.INVALID_INPUT, str(exc), exc.field)


def decode_place_batch(payload: dict[str, Any]) -> PlaceBatch:
    user_id = user_id_of(payload)
    orders = [_entry("place", user_id, entry) for entry in _entries(payload)]
    return PlaceBatch(user_id, orders)


def decode_cancel_batch(payload: dict[str, Any]) -> CancelBatch:
    user_id = user_id_of(payload)
    cancels = [_entry("cancel", user_id, entry) for entry in _entries(payload)]
    return CancelBatch(user_id, cancels)


def place_batch(engine: Engine, kyc: KycBook, batch: PlaceBatch) -> tuple[Reply, list[Event]]:
    """Each order as if placed alone, in order; the reply holds one entry per order."""
    results: list[Reply] = []
    events: list[Event] = []
    may_trade = kyc.may_trade(batch.user_id)
    for order in batch.orders:
        if isinstance(order, dict):
            results.append(order)
        elif not may_trade:
            results.append(rejected(KYC_REQUIRED, KYC_MESSAGE))
        else:
            order_events = engine.process(order)
            results.append(reply_for(order, order_events))
            events.extend(order_events)
    return {"ok": True, "error": None, "entries": results}, events


def cancel_batch(engine: Engine, batch: CancelBatch) -> tuple[Reply, list[Event]]:
    """Each cancel as if sent alone, in order; the reply holds one entry per cancel."""
    results: list[Reply] = []
    events: list[Event] = []
    for cancel in batch.cancels:
        if isinstance(cancel, dict):
            results.append(cancel)
            continue
        cancel_events = engine.process(cancel)
        results.append(reply_for(cancel, cancel_events))
        events.extend(cancel_events)
    return {"ok": True, "error": None, "entries": results}, events
