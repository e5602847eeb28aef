"""A market maker's batch: many orders (or cancels) in one command, one reply.

The entries run through the engine in order, inside the one command: they are committed
in the same group commit (one transaction) and answered together, each with its own
reply - one refused entry does not stop the others. A retried batch places nothing twice
for entries that name a ``client_order_id`` (the engine answers those with the original
order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app import wire
from engine import CancelOrder, Command, Event, PlaceOrder, RejectCode
from workers.matching.codec import BadCommand, cancel_command, order_command, rejected
from workers.matching.kyc import KYC_MESSAGE, KYC_REQUIRED

Run = Callable[[Command], tuple[wire.Reply, list[Event]]]
"""Runs one engine command within the batch being matched: its reply and events."""


@dataclass(frozen=True, slots=True)
class Entries:
    """A ``place_batch`` or ``cancel_batch`` decoded: each entry the engine's command, or
    the INVALID_INPUT reply of an entry that could not be read."""

    user_id: int
    commands: list[PlaceOrder | CancelOrder | wire.Reply]
    places: bool
    """Orders to place (refused unless the user may trade), not cancels."""


def entries(command: wire.PlaceBatch | wire.CancelBatch) -> Entries:
    """Each entry checked alone: a bad one is refused, the others still run."""
    commands: list[PlaceOrder | CancelOrder | wire.Reply] = []
    for entry in command.entries:
        try:
            if isinstance(entry, wire.OrderEntry):
                commands.append(order_command(command.user_id, entry))
            else:
                commands.append(cancel_command(command.user_id, entry))
        except BadCommand as exc:
            commands.append(rejected(RejectCode.INVALID_INPUT, str(exc), exc.field))
    return Entries(command.user_id, commands, places=isinstance(command, wire.PlaceBatch))


def run_entries(batch: Entries, may_trade: bool, run: Run) -> tuple[wire.Reply, list[Event]]:
    """Each entry as if sent alone, in order; the reply holds one reply per entry."""
    replies: list[wire.Reply] = []
    events: list[Event] = []
    for command in batch.commands:
        if isinstance(command, wire.Reply):
            replies.append(command)
        elif batch.places and not may_trade:
            replies.append(rejected(KYC_REQUIRED, KYC_MESSAGE))
        else:
            reply, command_events = run(command)
            replies.append(reply)
            events.extend(command_events)
    return wire.Reply(entries=replies), events
