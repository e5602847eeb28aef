"""Field and mutation permissions. They fail closed: no viewer, no access; an error while
checking (Redis down) fails the field rather than letting it through.

Not logged in → ``UNAUTHENTICATED``; logged in but not allowed → ``FORBIDDEN``. Either way
the field is null and the rest of the response stands (so guarded fields are nullable).
"""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.permission import BasePermission

from app.accounts.sessions import Viewer
from graph.context import Context
from graph.errors import FORBIDDEN, unauthenticated


async def require_viewer(info: strawberry.Info[Context, None]) -> Viewer:
    """The logged-in caller, or an UNAUTHENTICATED error (resolvers behind IsAuthenticated
    use it to get the viewer they were let in as)."""
    viewer = await info.context.viewer()
    if viewer is None:
        raise unauthenticated()
    return viewer


class IsAuthenticated(BasePermission):
    message = "you must be logged in"

    async def has_permission(
        self, source: Any, info: strawberry.Info[Context, None], **kwargs: Any
    ) -> bool:
        await require_viewer(info)
        return True


class IsAdmin(BasePermission):
    message = "only admins may do this"
    error_extensions = {"code": FORBIDDEN}  # noqa: RUF012 - as BasePermission declares it

    async def has_permission(
        self, source: Any, info: strawberry.Info[Context, None], **kwargs: Any
    ) -> bool:
        return (await require_viewer(info)).is_admin


class IsAdminOrSelf(BasePermission):
    """For fields of a ``User``: the user themself, or an admin."""

    message = "only admins may see this about other users"
    error_extensions = {"code": FORBIDDEN}  # noqa: RUF012 - as BasePermission declares it

    async def has_permission(
        self, source: Any, info: strawberry.Info[Context, None], **kwargs: Any
    ) -> bool:
        viewer = await require_viewer(info)
        return viewer.is_admin or getattr(source, "pk", None) == viewer.user_id
