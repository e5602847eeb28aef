"""DataLoaders: one batched query per kind of nested object, per operation."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from strawberry.dataloader import DataLoader

from app.accounts.models import User
from app.risk.models import RiskEvent
from app.risk.repository import EventFilter
from app.services import Services


class Loaders:
    def __init__(self, services: Services) -> None:
        self._services = services
        self.user: DataLoader[int, User | None] = DataLoader(load_fn=self._load_users)
        # key: (user id, how many of the newest events, which ones)
        self.risk_events_of_user: DataLoader[tuple[int, int, EventFilter], list[RiskEvent]] = (
            DataLoader(load_fn=self._load_risk_events)
        )

    async def _load_users(self, ids: Sequence[int]) -> list[User | None]:
        rows = {row.id: row for row in await self._services.accounts.get_many(ids)}
        return [rows.get(user_id) for user_id in ids]

    async def _load_risk_events(
        self, keys: Sequence[tuple[int, int, EventFilter]]
    ) -> list[list[RiskEvent]]:
        users_by_query: defaultdict[tuple[int, EventFilter], list[int]] = defaultdict(list)
        for user_id, limit, where in keys:
            users_by_query[limit, where].append(user_id)
        found: dict[tuple[int, int, EventFilter], list[RiskEvent]] = {}
        for (limit, where), user_ids in users_by_query.items():
            by_user = await self._services.risk.latest_for_users(user_ids, limit, where)
            found.update({(user_id, limit, where): rows for user_id, rows in by_user.items()})
        return [found[key] for key in keys]
