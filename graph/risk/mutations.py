from __future__ import annotations

import strawberry

from app.kit.errors import Refused
from graph.context import Context
from graph.errors import ErrorCode, UserError, user_errors
from graph.ids import parse_id
from graph.permissions import IsAdmin, require_viewer
from graph.risk.types import ResolveRiskEventPayload, RiskEvent


@strawberry.type
class RiskMutations:
    @strawberry.mutation(
        permission_classes=[IsAdmin],
        description=(
            "Admin: mark a risk event resolved, by you, now, with an optional `note` (at most "
            "200 characters). The first resolution stands: resolving again changes nothing "
            "unless you give a new note, which replaces the note and makes you and now its "
            "`resolvedBy` / `resolvedAt`."
        ),
    )
    async def resolve_risk_event(
        self, info: strawberry.Info[Context, None], id: strawberry.ID, note: str | None = None
    ) -> ResolveRiskEventPayload | None:
        pk = parse_id(id)
        if pk is None:
            return ResolveRiskEventPayload(
                risk_event=None,
                errors=[
                    UserError(
                        code=ErrorCode.NOT_FOUND,
                        field="id",
                        message=f"no risk event with id {id!r}",
                    )
                ],
            )
        try:
            viewer = await require_viewer(info)
            row = await info.context.services.risk.resolve(pk, by=viewer.user_id, note=note)
        except Refused as refusal:
            return ResolveRiskEventPayload(risk_event=None, errors=user_errors(refusal.problems))
        return ResolveRiskEventPayload(risk_event=RiskEvent.from_row(row), errors=[])
