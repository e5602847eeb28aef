"""A client's copy of a depth view, kept by the README's sync procedure, with the checksum
computed here independently of the server's code (binascii, own formatting)."""

from __future__ import annotations

import binascii
from decimal import Decimal
from typing import Any


def text(amount: str) -> str:
    """How the API writes an amount: no trailing zeros, no exponent."""
    value = Decimal(amount)
    written = f"{value:f}"
    if "." in written:
        written = written.rstrip("0").rstrip(".")
    return written or "0"


def book_checksum(bids: list[dict[str, Any]], asks: list[dict[str, Any]]) -> int:
    """OKX's book checksum: best bid, best ask, second bid, second ask… as price:quantity,
    joined by ':', CRC32 as a signed 32-bit integer."""
    fields: list[str] = []
    for i in range(max(len(bids), len(asks))):
        if i < len(bids):
            fields += [text(bids[i]["price"]), text(bids[i]["quantity"])]
        if i < len(asks):
            fields += [text(asks[i]["price"]), text(asks[i]["quantity"])]
    value = binascii.crc32(":".join(fields).encode("ascii")) & 0xFFFFFFFF
    return value - 2**32 if value > 2**31 - 1 else value


class BookCopy:
    """Applies orderBook updates as a client must; raises AssertionError on any break."""

    def __init__(self) -> None:
        self.sequence: int | None = None
        self.levels: dict[str, dict[str, dict[str, Any]]] = {"bids": {}, "asks": {}}
        self.kinds: list[str] = []

    def side(self, name: str) -> list[dict[str, Any]]:
        return sorted(
            self.levels[name].values(),
            key=lambda level: Decimal(level["price"]),
            reverse=name == "bids",
        )

    def apply(self, update: dict[str, Any]) -> None:
        kind = update["type"]
        self.kinds.append(kind)
        if kind in ("SNAPSHOT", "RESYNC"):
            assert update.get("prevSequence") is None, update
            self.levels = {
                name: {level["price"]: level for level in update[name]} for name in self.levels
            }
        else:
            assert kind == "DELTA", update
            assert self.sequence is not None, "a DELTA before the SNAPSHOT"
            assert update["prevSequence"] == self.sequence, (update, self.sequence)
            assert update["sequence"] > self.sequence, update
            for name in ("bids", "asks"):
                for level in update[name]:
                    if Decimal(level["quantity"]) == 0:
                        # Remove it if held: a merged DELTA may remove a level that came
                        # and went since the client's last update.
                        self.levels[name].pop(level["price"], None)
                    else:
                        self.levels[name][level["price"]] = level
        self.sequence = update["sequence"]
        if "depth" in update:
            assert len(self.levels["bids"]) <= update["depth"]
            assert len(self.levels["asks"]) <= update["depth"]
        if "checksum" in update:
            assert book_checksum(self.side("bids"), self.side("asks")) == update["checksum"], (
                "checksum mismatch",
                update,
            )

    def equals(self, book: dict[str, Any]) -> bool:
        return bool(self.side("bids") == book["bids"] and self.side("asks") == book["asks"])
