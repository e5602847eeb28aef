"""The detector's rules: pure, deterministic, driven by the activity stream's entries.

Every window is measured on the activity's own times (the batch's commit time), never the
clock, so replaying the same entries after a restart finds exactly the same findings with
the same ``dedupe_key`` (the database drops the ones already stored). Each windowed rule
fires once per user (or pair) per window bucket: ``dedupe_key`` is
``{rule}:{subject}:{int(at // window)}``.
"""

from __future__ import annotations

import statistics
from collections import defaultdict, deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from app import wire
from app.config import Settings
from engine.enums import CancelReason, RiskEventType, RiskSeverity, Side

HISTORY = 200
"""Order sizes kept per account and per market for the typical (median) size."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One risk_events row to insert (and alert on) — ``metadata`` is JSON-ready."""

    rule: str
    user_id: int | None
    event_type: RiskEventType
    severity: RiskSeverity
    description: str
    metadata: dict[str, Any]

    @property
    def dedupe_key(self) -> str:
        return str(self.metadata["dedupe_key"])


@dataclass(slots=True)
class _Order:
    order_id: int
    user_id: int
    symbol: str
    side: Side
    quantity: Decimal
    at: float
    large: bool


@dataclass(slots=True)
class Detector:
    settings: Settings
    emitted: set[str] = field(default_factory=set)
    orders: dict[int, _Order] = field(default_factory=dict)
    self_trades: dict[int, deque[tuple[float, int | None]]] = field(
        default_factory=lambda: defaultdict(deque)
    )
    trades: dict[int, deque[tuple[float, int, int]]] = field(
        default_factory=lambda: defaultdict(deque)
    )
    """Per user: (at, counterparty, trade id)."""
    spoofs: dict[int, deque[tuple[float, int]]] = field(default_factory=lambda: defaultdict(deque))
    layer_cancels: dict[tuple[int, str, Side], deque[tuple[float, int, float]]] = field(
        default_factory=lambda: defaultdict(deque)
    )
    cancels: dict[int, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    fills: dict[int, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    accepted: dict[int, deque[tuple[float, int]]] = field(
        default_factory=lambda: defaultdict(deque)
    )
    user_sizes: dict[int, deque[Decimal]] = field(
        default_factory=lambda: defaultdict(lambda: deque(maxlen=HISTORY))
    )
    market_sizes: dict[str, deque[Decimal]] = field(
        default_factory=lambda: defaultdict(lambda: deque(maxlen=HISTORY))
    )
    seen: int = 0

    @property
    def longest_window(self) -> float:
        s = self.settings
        return float(
            max(
                s.risk_wash_trading_window_seconds,
                s.risk_wash_pair_window_seconds,
                s.risk_spoofing_window_seconds,
                s.risk_cancel_to_fill_window_seconds,
                s.risk_order_burst_window_seconds,
                s.risk_layering_cancel_seconds,
            )
        )

    def feed(self, entry_id: str, activity: wire.Activity) -> list[Finding]:
        found: list[Finding] = []
        for index, item in enumerate(activity.items):
            match item:
                case wire.OrderPlaced():
                    found += self._placed(item)
                case wire.OrderWithdrawn():
                    found += self._cancelled(item)
                case wire.TradeDone():
                    found += self._traded(item)
                case wire.SelfTradePrevented():
                    found += self._self_trade(item)
                case wire.WithdrawalMade():
                    found += self._withdrawal(entry_id, index, item)
        self.seen += 1
        if self.seen % 1000 == 0 and activity.items:
            self._forget(activity.items[-1].at)
        return found

    # Helpers.

    def _once(self, rule: str, subject: str, at: float, window: float) -> str | None:
        key = f"{rule}:{subject}:{int(at // window)}"
        if key in self.emitted:
            return None
        self.emitted.add(key)
        return key

    @staticmethod
    def _prune(times: deque[Any], now: float, window: float) -> None:
        while times and (times[0] if isinstance(times[0], float) else times[0][0]) <= now - window:
            times.popleft()

    def _forget(self, now: float) -> None:
        horizon = now - self.longest_window
        self.orders = {k: o for k, o in self.orders.items() if o.at > horizon}

    # Rules.

    def _placed(self, item: wire.OrderPlaced) -> list[Finding]:
        s = self.settings
        quantity = Decimal(item.quantity)
        mine, market = self.user_sizes[item.user_id], self.market_sizes[item.symbol]
        multiple = s.risk_spoofing_size_multiple
        large = (
            item.price is not None
            and len(market) >= s.risk_spoofing_min_history
            and quantity >= multiple * statistics.median(market)
            and (not mine or quantity >= multiple * statistics.median(mine))
        )
        mine.append(quantity)
        market.append(quantity)
        self.orders[item.order_id] = _Order(
            item.order_id, item.user_id, item.symbol, item.side, quantity, item.at, large
        )
        window = s.risk_order_burst_window_seconds
        times = self.accepted[item.user_id]
        times.append((item.at, item.order_id))
        self._prune(times, item.at, window)
        if len(times) <= s.risk_order_burst_orders:
            return []
        key = self._once("order_burst", str(item.user_id), item.at, window)
        if key is None:
            return []
        ids = [order_id for _, order_id in times]
        return [
            Finding(
                "order_burst",
                item.user_id,
                RiskEventType.SUSPICIOUS_ACTIVITY,
                RiskSeverity.MEDIUM,
                f"order burst: {len(ids)} orders in {window:g} s "
                f"(more than {s.risk_order_burst_orders} allowed)",
                {
                    "rule": "order_burst",
                    "dedupe_key": key,
                    "window_seconds": window,
                    "threshold_orders": s.risk_order_burst_orders,
                    "count": len(ids),
                    "order_ids": ids,
                },
            )
        ]

    def _cancelled(self, item: wire.OrderWithdrawn) -> list[Finding]:
        found: list[Finding] = []
        order = self.orders.pop(item.order_id, None)
        if item.reason is not CancelReason.USER:
            return found
        found += self._cancel_to_fill(item.user_id, item.at)
        if order is None or Decimal(item.filled) != 0:
            return found
        found += self._layering(order, item.at)
        if order.large and item.at - order.at <= self.settings.risk_spoofing_cancel_seconds:
            found += self._spoofing(order, item.at)
        return found

    def _spoofing(self, order: _Order, at: float) -> list[Finding]:
        s = self.settings
        window = s.risk_spoofing_window_seconds
        spoofs = self.spoofs[order.user_id]
        spoofs.append((at, order.order_id))
        self._prune(spoofs, at, window)
        if len(spoofs) < s.risk_spoofing_count:
            return []
        key = self._once("spoofing", str(order.user_id), at, window)
        if key is None:
            return []
        ids = [order_id for _, order_id in spoofs]
        return [
            Finding(
                "spoofing",
                order.user_id,
                RiskEventType.SUSPICIOUS_ACTIVITY,
                RiskSeverity.HIGH,
                f"possible spoofing on {order.symbol}: {len(ids)} orders of at least "
                f"{s.risk_spoofing_size_multiple}x the typical size cancelled unfilled within "
                f"{s.risk_spoofing_cancel_seconds:g} s",
                {
                    "rule": "spoofing",
                    "dedupe_key": key,
                    "window_seconds": window,
                    "symbol": order.symbol,
                    "size_multiple": s.risk_spoofing_size_multiple,
                    "cancel_seconds": s.risk_spoofing_cancel_seconds,
                    "threshold_count": s.risk_spoofing_count,
                    "count": len(ids),
                    "order_ids": ids,
                },
            )
        ]

    def _layering(self, order: _Order, at: float) -> list[Finding]:
        s = self.settings
        window = s.risk_layering_cancel_seconds
        cancels = self.layer_cancels[order.user_id, order.symbol, order.side]
        cancels.append((at, order.order_id, order.at))
        self._prune(cancels, at, window)
        # Stacked: every one of them was resting before the first of them was cancelled.
        first_cancel = cancels[0][0]
        stacked = [c for c in cancels if c[2] <= first_cancel]
        if len(stacked) < s.risk_layering_orders:
            return []
        key = self._once(
            "layering", f"{order.user_id}:{order.symbol}:{order.side.value}", at, window
        )
        if key is None:
            return []
        ids = [order_id for _, order_id, _ in stacked]
        return [
            Finding(
                "layering",
                order.user_id,
                RiskEventType.SUSPICIOUS_ACTIVITY,
                RiskSeverity.HIGH,
                f"possible layering on {order.symbol}: {len(ids)} {order.side.value} orders "
                f"resting together were cancelled unfilled within {window:g} s",
                {
                    "rule": "layering",
                    "dedupe_key": key,
                    "window_seconds": window,
                    "symbol": order.symbol,
                    "side": order.side.value,
                    "threshold_orders": s.risk_layering_orders,
                    "count": len(ids),
                    "order_ids": ids,
                },
            )
        ]

    def _cancel_to_fill(self, user_id: int, at: float) -> list[Finding]:
        s = self.settings
        window = s.risk_cancel_to_fill_window_seconds
        cancels, fills = self.cancels[user_id], self.fills[user_id]
        cancels.append(at)
        self._prune(cancels, at, window)
        self._prune(fills, at, window)
        ratio_needed = s.risk_cancel_to_fill_ratio
        if len(cancels) < s.risk_cancel_to_fill_min_cancels:
            return []
        if len(cancels) < ratio_needed * max(len(fills), 1):
            return []
        key = self._once("cancel_to_fill", str(user_id), at, window)
        if key is None:
            return []
        return [
            Finding(
                "cancel_to_fill",
                user_id,
                RiskEventType.SUSPICIOUS_ACTIVITY,
                RiskSeverity.LOW,
                f"excessive cancel-to-fill ratio: {len(cancels)} cancels against "
                f"{len(fills)} fills in {window} s",
                {
                    "rule": "cancel_to_fill",
                    "dedupe_key": key,
                    "window_seconds": window,
                    "threshold_min_cancels": s.risk_cancel_to_fill_min_cancels,
                    "threshold_ratio": ratio_needed,
                    "cancels": len(cancels),
                    "fills": len(fills),
                },
            )
        ]

    def _traded(self, item: wire.TradeDone) -> list[Finding]:
        s = self.settings
        window = s.risk_wash_pair_window_seconds
        buyer, seller = item.buyer_user_id, item.seller_user_id
        for user_id, other in ((buyer, seller), (seller, buyer)):
            self.fills[user_id].append(item.at)
            trades = self.trades[user_id]
            trades.append((item.at, other, item.trade_id))
            self._prune(trades, item.at, window)
        if buyer == seller:
            return []
        a, b = sorted((buyer, seller))
        together = [t for t in self.trades[a] if t[1] == b]
        total_a, total_b = len(self.trades[a]), len(self.trades[b])
        share = s.risk_wash_pair_share_percent
        if len(together) < s.risk_wash_pair_min_trades:
            return []
        if 100 * len(together) < share * total_a or 100 * len(together) < share * total_b:
            return []
        key = self._once("wash_pair", f"{a}:{b}", item.at, window)
        if key is None:
            return []
        return [
            Finding(
                "wash_pair",
                a,
                RiskEventType.SUSPICIOUS_ACTIVITY,
                RiskSeverity.HIGH,
                f"possible wash trading: users {a} and {b} traded {len(together)} times "
                f"with each other in {window} s, at least {share} % of each one's trades",
                {
                    "rule": "wash_pair",
                    "dedupe_key": key,
                    "window_seconds": window,
                    "counterparty_user_id": b,
                    "threshold_min_trades": s.risk_wash_pair_min_trades,
                    "threshold_share_percent": share,
                    "count": len(together),
                    "user_trades": total_a,
                    "counterparty_trades": total_b,
                    "trade_ids": [t[2] for t in together],
                },
            )
        ]

    def _self_trade(self, item: wire.SelfTradePrevented) -> list[Finding]:
        s = self.settings
        window = s.risk_wash_trading_window_seconds
        events = self.self_trades[item.user_id]
        events.append((item.at, item.order_id))
        self._prune(events, item.at, window)
        if len(events) < s.risk_wash_trading_count:
            return []
        key = self._once("wash_trading", str(item.user_id), item.at, window)
        if key is None:
            return []
        ids = [order_id for _, order_id in events]
        return [
            Finding(
                "wash_trading",
                item.user_id,
                RiskEventType.SUSPICIOUS_ACTIVITY,
                RiskSeverity.MEDIUM,
                f"repeated self-trading: self-trade prevention fired {len(ids)} times "
                f"in {window} s",
                {
                    "rule": "wash_trading",
                    "dedupe_key": key,
                    "window_seconds": window,
                    "threshold_count": s.risk_wash_trading_count,
                    "count": len(ids),
                    "order_ids": ids,
                },
            )
        ]

    def _withdrawal(self, entry_id: str, index: int, item: wire.WithdrawalMade) -> list[Finding]:
        limit = self.settings.risk_large_withdrawal.get(item.asset)
        if limit is None or Decimal(item.amount) < limit:
            return []
        key = f"large_withdrawal:{entry_id}:{index}"
        return [
            Finding(
                "large_withdrawal",
                item.user_id,
                RiskEventType.WITHDRAWAL,
                RiskSeverity.HIGH,
                f"large withdrawal: {item.amount} {item.asset} "
                f"(at least {wire.decimal_text(limit)} {item.asset})",
                {
                    "rule": "large_withdrawal",
                    "dedupe_key": key,
                    "window_seconds": 0,
                    "asset": item.asset,
                    "amount": item.amount,
                    "threshold_amount": wire.decimal_text(limit),
                    "stream_entry": entry_id,
                },
            )
        ]
