from __future__ import annotations

import strawberry

from app.kit.errors import Refused
from graph.context import Context
from graph.errors import ErrorCode, UserError, user_errors
from graph.ids import parse_id
from graph.permissions import IsAdmin
from graph.risk.types import ResolveRiskEventPayload, RiskEvent


@strawberry.type
class RiskMutations:
    @strawberry.mutation(
        permission_classes=[IsAdmin],
        description="Admin: mark a risk event resolved (again is harmless).",
    )
    async def resolve_risk_event(
        self, info: strawberry.Info[Context, None], id: strawberry.ID
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
            row = await info.context.services.risk.resolve(pk)
        except Refused as refusal:
            return ResolveRiskEventPayload(risk_event=None, errors=user_errors(refusal.problems))
        return ResolveRiskEventPayload(risk_event=RiskEvent.from_row(row), errors=[])
