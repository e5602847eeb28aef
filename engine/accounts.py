"""Balances: available and locked per (account, asset), in 1e-8 units."""


class Balance:
    """One account's holding of one asset. Mutated in place; orders keep a reference."""

    __slots__ = ("available", "buying", "locked")

    def __init__(self, available: int = 0, locked: int = 0) -> None:
        self.available = available
        self.locked = locked
        self.buying = 0
        """Of a base asset: what the account's resting BUY orders would still add to it
        (their remaining quantities), for the position limit."""

    def __repr__(self) -> str:
        return f"Balance(available={self.available}, locked={self.locked})"


class Accounts:
    """Every account's balances: ``user id -> asset -> Balance``, created on first use."""

    __slots__ = ("by_user",)

    def __init__(self) -> None:
        self.by_user: dict[int, dict[str, Balance]] = {}
        """user id -> asset -> Balance; the engine reads it directly on its hot path."""

    def get(self, user_id: int, asset: str) -> Balance:
        """The balance, created empty if the account never held the asset."""
        assets = self.by_user.get(user_id)
        if assets is None:
            assets = self.by_user[user_id] = {}
        balance = assets.get(asset)
        if balance is None:
            balance = assets[asset] = Balance()
        return balance

    def available(self, user_id: int, asset: str) -> int:
        """Available units without creating anything."""
        assets = self.by_user.get(user_id)
        if assets is None:
            return 0
        balance = assets.get(asset)
        return 0 if balance is None else balance.available

    def peek(self, user_id: int, asset: str) -> tuple[int, int]:
        """``(available, locked)`` without creating anything."""
        balance = self.by_user.get(user_id, {}).get(asset)
        return (0, 0) if balance is None else (balance.available, balance.locked)

    def items(self) -> list[tuple[int, str, Balance]]:
        """Every (user, asset, balance), sorted by user then asset."""
        return [
            (user_id, asset, self.by_user[user_id][asset])
            for user_id in sorted(self.by_user)
            for asset in sorted(self.by_user[user_id])
        ]
