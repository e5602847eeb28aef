"""The detector's rules, fed activity directly (pure: no processes, no stores)."""

from __future__ import annotations

from app import wire
from app.config import Settings
from engine.enums import CancelReason, OrderType, RiskEventType, RiskSeverity, Side
from workers.risk_monitor.rules import Detector, Finding

T0 = 1_800_000_000.0


class Feed:
    def __init__(self, **settings: object) -> None:
        self.detector = Detector(Settings(**settings))  # type: ignore[arg-type]
        self.next_id = 1
        self.entry = 0
        self.found: list[Finding] = []
        self.log: list[tuple[str, wire.Activity]] = []

    def send(self, *items: wire.ActivityItem) -> list[Finding]:
        self.entry += 1
        entry_id = f"{self.entry}-0"
        activity = wire.Activity(items=list(items))
        self.log.append((entry_id, activity))
        found = self.detector.feed(entry_id, activity)
        self.found += found
        return found

    def place(
        self, user: int, at: float, qty: str = "1", side: Side = Side.BUY, symbol: str = "BTC-USDT"
    ) -> int:
        order_id = self.next_id
        self.next_id += 1
        self.send(
            wire.OrderPlaced(
                order_id=order_id,
                user_id=user,
                symbol=symbol,
                side=side,
                order_type=OrderType.LIMIT,
                quantity=qty,
                price="100",
                at=at,
            )
        )
        return order_id

    def cancel(self, user: int, order_id: int, at: float, symbol: str = "BTC-USDT") -> None:
        self.send(
            wire.OrderWithdrawn(
                order_id=order_id,
                user_id=user,
                symbol=symbol,
                reason=CancelReason.USER,
                filled="0",
                at=at,
            )
        )

    def trade(self, buyer: int, seller: int, at: float, symbol: str = "BTC-USDT") -> None:
        trade_id = self.next_id
        self.next_id += 1
        self.send(
            wire.TradeDone(
                trade_id=trade_id,
                symbol=symbol,
                price="100",
                quantity="1",
                buyer_user_id=buyer,
                seller_user_id=seller,
                buyer_order_id=trade_id,
                seller_order_id=trade_id,
                at=at,
            )
        )

    def rules(self) -> list[str]:
        return [f.rule for f in self.found]


def test_wash_trading_fires_once_after_n_self_trades() -> None:
    feed = Feed(risk_wash_trading_count=3, risk_wash_trading_window_seconds=60)
    for i in range(5):
        feed.send(wire.SelfTradePrevented(user_id=7, order_id=10 + i, symbol="BTC-USDT", at=T0 + i))
    assert feed.rules() == ["wash_trading"]
    finding = feed.found[0]
    assert finding.user_id == 7
    assert finding.severity is RiskSeverity.MEDIUM
    assert finding.event_type is RiskEventType.SUSPICIOUS_ACTIVITY
    assert finding.metadata["order_ids"] == [10, 11, 12]
    assert finding.metadata["count"] == 3
    assert finding.dedupe_key == f"wash_trading:7:{int((T0 + 2) // 60)}"


def test_wash_pair_needs_mostly_each_other() -> None:
    feed = Feed(risk_wash_pair_min_trades=4, risk_wash_pair_share_percent=80)
    for i in range(3):
        feed.trade(1, 2, T0 + i)
    assert feed.rules() == []
    feed.trade(2, 1, T0 + 3)
    assert feed.rules() == ["wash_pair"]
    assert feed.found[0].user_id == 1
    assert feed.found[0].metadata["counterparty_user_id"] == 2
    assert feed.found[0].metadata["count"] == 4
    # Another pair trading with many others does not fire.
    other = Feed(risk_wash_pair_min_trades=4, risk_wash_pair_share_percent=80)
    for i in range(8):
        other.trade(5, 6 if i % 2 else 7 + i, T0 + i)
    assert other.rules() == []


def test_spoofing_large_quick_unfilled_cancels_repeated() -> None:
    feed = Feed(risk_spoofing_min_history=5, risk_spoofing_count=3)
    for i in range(10):
        feed.place(3, T0 + i, "1")
    big = []
    for i in range(3):
        order_id = feed.place(3, T0 + 20 + i * 10, "50")
        big.append(order_id)
        feed.cancel(3, order_id, T0 + 22 + i * 10)
    assert feed.rules() == ["spoofing"]
    assert feed.found[0].metadata["order_ids"] == big
    assert feed.found[0].severity is RiskSeverity.HIGH


def test_spoofing_not_when_cancelled_slowly() -> None:
    feed = Feed(risk_spoofing_min_history=5, risk_spoofing_count=3)
    for i in range(10):
        feed.place(3, T0 + i, "1")
    for i in range(3):
        order_id = feed.place(3, T0 + 20 + i * 30, "50")
        feed.cancel(3, order_id, T0 + 40 + i * 30)
    assert feed.rules() == []


def test_layering_many_resting_cancelled_together() -> None:
    feed = Feed(risk_layering_orders=5)
    ids = [feed.place(4, T0 + i * 0.1, side=Side.SELL) for i in range(5)]
    for i, order_id in enumerate(ids):
        feed.cancel(4, order_id, T0 + 10 + i * 0.01)
    assert feed.rules() == ["layering"]
    assert feed.found[0].metadata["order_ids"] == ids
    assert feed.found[0].metadata["side"] == "SELL"


def test_cancel_to_fill_and_order_burst() -> None:
    feed = Feed(
        risk_cancel_to_fill_min_cancels=20,
        risk_cancel_to_fill_ratio=10,
        risk_order_burst_orders=10,
        risk_layering_orders=1000,
    )
    for i in range(25):
        feed.cancel(9, feed.place(9, T0 + i), T0 + i + 0.5)
    assert feed.rules() == ["cancel_to_fill"]
    feed.found.clear()
    for i in range(11):
        feed.place(8, T0 + 100 + i * 0.01)
    assert feed.rules() == ["order_burst"]
    assert feed.found[0].metadata["count"] == 11


def test_large_withdrawal_by_asset_threshold() -> None:
    feed = Feed()
    feed.send(wire.WithdrawalMade(user_id=5, asset="BTC", amount="9.99999999", at=T0))
    assert feed.rules() == []
    feed.send(wire.WithdrawalMade(user_id=5, asset="BTC", amount="10", at=T0))
    assert feed.rules() == ["large_withdrawal"]
    assert feed.found[0].event_type is RiskEventType.WITHDRAWAL
    assert feed.found[0].metadata["threshold_amount"] == "10"


def test_market_making_raises_nothing_with_defaults() -> None:
    """Two makers requote both sides of two markets every second for ten minutes; a taker
    crosses every 7 s."""
    feed = Feed()
    quotes: dict[tuple[int, str, Side], int] = {}
    for second in range(600):
        at = T0 + second
        for maker in (1, 2):
            for symbol in ("BTC-USDT", "ETH-USDT"):
                for side in Side:
                    old = quotes.get((maker, symbol, side))
                    if old is not None:
                        feed.cancel(maker, old, at + 0.01, symbol)
                    quotes[maker, symbol, side] = feed.place(maker, at + 0.02, "0.5", side, symbol)
        if second % 7 == 0:
            feed.trade(3, 1 + second % 2, at + 0.5, "BTC-USDT" if second % 2 else "ETH-USDT")
    assert feed.found == []


def test_replay_finds_the_same_keys() -> None:
    feed = Feed(risk_wash_trading_count=2)
    for i in range(4):
        feed.send(wire.SelfTradePrevented(user_id=1, order_id=i + 1, symbol=None, at=T0 + i))
    again = Detector(feed.detector.settings)
    keys = [f.dedupe_key for entry_id, activity in feed.log for f in again.feed(entry_id, activity)]
    assert keys == [f.dedupe_key for f in feed.found]
    assert len(keys) == 1
