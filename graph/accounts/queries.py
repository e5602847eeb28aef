from __future__ import annotations

import strawberry

from graph.accounts.types import KycStatus, User, UserConnection
from graph.context import Context
from graph.pagination import DEFAULT_PAGE_SIZE, connection, page_request
from graph.permissions import IsAdmin, IsAuthenticated


@strawberry.type
class AccountQueries:
    @strawberry.field(permission_classes=[IsAuthenticated], description="The logged-in user.")
    async def me(self, info: strawberry.Info[Context, None]) -> User | None:
        viewer = await info.context.viewer()
        assert viewer is not None  # IsAuthenticated
        row = await info.context.loaders.user.load(viewer.user_id)
        return User.from_row(row) if row else None

    @strawberry.field(
        permission_classes=[IsAdmin],
        description="Every user, newest first (admin only; `first` at most 100).",
    )
    async def users(
        self,
        info: strawberry.Info[Context, None],
        first: int = DEFAULT_PAGE_SIZE,
        after: str | None = None,
        kyc_status: KycStatus | None = None,
    ) -> UserConnection | None:
        page = await info.context.services.accounts.list_users(
            page_request(first, after), kyc_status=kyc_status.value if kyc_status else None
        )
        return connection(page, User.from_row, after=after)
