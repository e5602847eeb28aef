"""Refusals that look like abuse rather than a typo become risk events.

The engine refuses an order that breaks a risk rule (RISK_REJECTED, naming the rule); one
such refusal is a trader's mistake, the same rule refusing the same account again and
again within a minute is worth an admin's look. The worker counts them per (user, rule)
and raises one MEDIUM ``SUSPICIOUS_ACTIVITY`` event when an account reaches
``REFUSALS`` within ``WINDOW_SECONDS``; the same account and rule are not reported again
until the window has passed.
"""

from __future__ import annotations

from collections import deque

from engine import RiskEventRaised, RiskEventType, RiskSeverity

REFUSALS = 3
WINDOW_SECONDS = 60

RULE_NAMES = {
    "price_band": "the price band",
    "position_limit": "the position limit",
    "order_size": "the order size limit",
    "trading_suspended": "the trading suspension",
    "open_orders": "the open-order limit",
}


class RefusalWatch:
    def __init__(self, refusals: int = REFUSALS, window_seconds: int = WINDOW_SECONDS) -> None:
        self.refusals = refusals
        self.window = window_seconds
        self._seen: dict[tuple[int, str], deque[float]] = {}
        self._quiet_until: dict[tuple[int, str], float] = {}

    def refused(
        self, user_id: int, rule: str, message: str, now: float, symbol: str | None
    ) -> RiskEventRaised | None:
        """Count one refusal; the risk event to raise, if this one makes the pattern."""
        key = (user_id, rule)
        if self._quiet_until.get(key, 0.0) > now:
            return None
        times = self._seen.setdefault(key, deque())
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) < self.refusals:
            return None
        count = len(times)
        del self._seen[key]
        self._quiet_until[key] = now + self.window
        if len(self._quiet_until) > 10_000:  # forget the old ones
            self._quiet_until = {k: t for k, t in self._quiet_until.items() if t > now}
        what = RULE_NAMES.get(rule, rule)
        return RiskEventRaised(
            user_id,
            RiskEventType.SUSPICIOUS_ACTIVITY,
            RiskSeverity.MEDIUM,
            f"{count} orders of user {user_id} refused by {what} within {self.window} s; "
            f"the last: {message}",
            None,
            symbol,
            rule,
            (
                ("refusals", count),
                ("threshold", self.refusals),
                ("window_seconds", self.window),
                ("last_message", message),
            ),
        )
