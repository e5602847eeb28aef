from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import Enum

import strawberry

from app.accounts.models import User as UserRow
from app.fees import next_tier
from graph.context import Context
from graph.errors import UserError
from graph.fees.types import NextFeeTier
from graph.pagination import Connection
from graph.permissions import IsAdmin, IsAdminOrSelf
from graph.risk.types import RiskEvent, RiskEventType, RiskSeverity, event_filter

MAX_NESTED_RISK_EVENTS = 100


@strawberry.enum(description="Where a user's identity check stands; trading needs APPROVED.")
class KycStatus(Enum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@strawberry.enum(description="What a user may do: trade (USER), also administer (ADMIN).")
class UserRole(Enum):
    USER = "user"
    ADMIN = "admin"
    SYSTEM = "system"


@strawberry.type(
    description=(
        "An account. Email, KYC status, fee tier and role are visible to the user themself "
        "(through `me`) and to admins; anyone else gets FORBIDDEN for them."
    )
)
class User:
    id: strawberry.ID
    username: str | None
    created_at: datetime
    email: str | None = strawberry.field(permission_classes=[IsAdminOrSelf])
    kyc_status: KycStatus | None = strawberry.field(permission_classes=[IsAdminOrSelf])
    fee_tier: int | None = strawberry.field(
        permission_classes=[IsAdminOrSelf], description="1 (default) to 5."
    )
    fee_tier_override: bool | None = strawberry.field(
        permission_classes=[IsAdminOrSelf],
        description="True when an admin pinned the fee tier (volume no longer decides it).",
    )
    role: UserRole | None = strawberry.field(permission_classes=[IsAdminOrSelf])
    pk: strawberry.Private[int]

    @strawberry.field(
        permission_classes=[IsAdmin],
        description=(
            f"The newest risk events about this user (admin only; at most "
            f"{MAX_NESTED_RISK_EVENTS}), narrowed as `riskEvents` narrows them."
        ),
    )
    async def risk_events(
        self,
        info: strawberry.Info[Context, None],
        first: int = 10,
        event_type: RiskEventType | None = None,
        severity: RiskSeverity | None = None,
        resolved: bool | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        rule: str | None = None,
    ) -> list[RiskEvent] | None:
        first = max(1, min(first, MAX_NESTED_RISK_EVENTS))
        where = event_filter(
            event_type=event_type,
            severity=severity,
            resolved=resolved,
            since=since,
            until=until,
            rule=rule,
        )
        rows = await info.context.loaders.risk_events_of_user.load((self.pk, first, where))
        return [RiskEvent.from_row(row) for row in rows]

    @strawberry.field(
        permission_classes=[IsAdminOrSelf],
        description=(
            "Quote volume (USDT) of the last 30 days, both sides of every trade: what the "
            "fee tier follows."
        ),
    )
    async def volume_30d(self, info: strawberry.Info[Context, None]) -> Decimal | None:
        volume = await info.context.services.fees.volume_30d(self.pk)
        return volume.normalize()

    @strawberry.field(
        permission_classes=[IsAdminOrSelf],
        description="The tier above the current one and the volume it needs (null at tier 5).",
    )
    async def next_tier(self, info: strawberry.Info[Context, None]) -> NextFeeTier | None:
        tiers = await info.context.services.fees.schedule()
        above = next_tier(tiers, self.fee_tier or 1)
        if above is None:
            return None
        volume = await info.context.services.fees.volume_30d(self.pk)
        needed = max(above.min_volume_30d - volume, Decimal(0))
        return NextFeeTier(tier=above.tier, volume_needed=needed.normalize())

    @strawberry.field(
        permission_classes=[IsAdminOrSelf],
        description="The maker fee of the current tier, a fraction (0.001 = 0.1 %).",
    )
    async def maker_fee(self, info: strawberry.Info[Context, None]) -> Decimal | None:
        return await self._rate(info, maker=True)

    @strawberry.field(
        permission_classes=[IsAdminOrSelf],
        description="The taker fee of the current tier, a fraction (0.0015 = 0.15 %).",
    )
    async def taker_fee(self, info: strawberry.Info[Context, None]) -> Decimal | None:
        return await self._rate(info, maker=False)

    async def _rate(self, info: strawberry.Info[Context, None], *, maker: bool) -> Decimal | None:
        for tier in await info.context.services.fees.schedule():
            if tier.tier == (self.fee_tier or 1):
                return (tier.maker_rate if maker else tier.taker_rate).normalize()
        return None

    @classmethod
    def from_row(cls, row: UserRow) -> User:
        return cls(
            id=strawberry.ID(str(row.id)),
            username=row.username,
            created_at=row.created_at,
            email=row.email,
            kyc_status=KycStatus(row.kyc_status),
            fee_tier=row.fee_tier,
            fee_tier_override=row.fee_tier_override,
            role=UserRole(row.role),
            pk=row.id,
        )


UserConnection = Connection[User]


@strawberry.input(description="Sign-up details.")
class RegisterInput:
    email: str
    username: str = strawberry.field(description="3–50 letters, digits, '_', '.' or '-'.")
    password: str = strawberry.field(description="At least 8 characters.")


@strawberry.type(
    description=(
        "The result of register and login: on success a bearer token (send it as "
        "`Authorization: Bearer <token>`) and the user; otherwise errors."
    )
)
class AuthPayload:
    token: str | None = None
    expires_at: datetime | None = None
    user: User | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type(description="The result of an admin change to a user.")
class UserPayload:
    user: User | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)
