from __future__ import annotations

import strawberry

from app.accounts.service import Login
from app.kit.errors import Refused
from graph.accounts.types import AuthPayload, RegisterInput, User, UserPayload
from graph.context import Context
from graph.errors import ErrorCode, UserError, user_errors
from graph.ids import parse_id
from graph.permissions import IsAdmin

Info = strawberry.Info[Context, None]


def _signed_in(info: Info, login: Login) -> AuthPayload:
    info.context.signed_in(login.viewer)
    return AuthPayload(
        token=login.token, expires_at=login.expires_at, user=User.from_row(login.user)
    )


def _no_such_user(user_id: str) -> UserPayload:
    return UserPayload(
        errors=[
            UserError(
                code=ErrorCode.NOT_FOUND, field="userId", message=f"no user with id {user_id!r}"
            )
        ]
    )


@strawberry.type
class AccountMutations:
    @strawberry.mutation(
        description="Sign up (KYC starts PENDING) and log in: returns a bearer token."
    )
    async def register(self, info: Info, input: RegisterInput) -> AuthPayload:
        try:
            login = await info.context.services.accounts.register(
                email=input.email,
                username=input.username,
                password=input.password,
                ip=info.context.client_ip,
            )
        except Refused as refusal:
            return AuthPayload(errors=user_errors(refusal.problems))
        return _signed_in(info, login)

    @strawberry.mutation(
        description=(
            "Log in: returns a bearer token valid for 24 h. One session per user: this ends "
            "any earlier session's token. A wrong password is INVALID_CREDENTIALS; after too "
            "many for one email every login for it is LOGIN_LOCKED for a while (the message "
            "says how long)."
        )
    )
    async def login(self, info: Info, email: str, password: str) -> AuthPayload:
        try:
            login = await info.context.services.accounts.login(
                email=email, password=password, ip=info.context.client_ip
            )
        except Refused as refusal:
            return AuthPayload(errors=user_errors(refusal.problems))
        return _signed_in(info, login)

    @strawberry.mutation(
        description="End the caller's session now; false if there was none to end."
    )
    async def logout(self, info: Info) -> bool:
        token = info.context.credentials()
        if token is None:
            return False
        return await info.context.services.accounts.logout(token)

    @strawberry.mutation(permission_classes=[IsAdmin], description="Admin: approve a user's KYC.")
    async def approve_kyc(self, info: Info, user_id: strawberry.ID) -> UserPayload | None:
        return await _set_kyc(info, user_id, "approved")

    @strawberry.mutation(permission_classes=[IsAdmin], description="Admin: reject a user's KYC.")
    async def reject_kyc(self, info: Info, user_id: strawberry.ID) -> UserPayload | None:
        return await _set_kyc(info, user_id, "rejected")

    @strawberry.mutation(
        permission_classes=[IsAdmin],
        description="Admin: pin a user's fee tier (1–5); their volume no longer changes it.",
    )
    async def set_fee_tier(
        self, info: Info, user_id: strawberry.ID, tier: int
    ) -> UserPayload | None:
        pk = parse_id(user_id)
        if pk is None:
            return _no_such_user(user_id)
        try:
            row = await info.context.services.accounts.set_fee_tier(pk, tier)
        except Refused as refusal:
            return UserPayload(errors=user_errors(refusal.problems))
        return UserPayload(user=User.from_row(row))

    @strawberry.mutation(
        permission_classes=[IsAdmin],
        description=(
            "Admin: unpin a user's fee tier; their 30-day volume decides it again (from the "
            "next fill that reaches a threshold, or the next run of the fee job)."
        ),
    )
    async def clear_fee_tier_override(
        self, info: Info, user_id: strawberry.ID
    ) -> UserPayload | None:
        pk = parse_id(user_id)
        if pk is None:
            return _no_such_user(user_id)
        try:
            row = await info.context.services.accounts.clear_fee_tier_override(pk)
        except Refused as refusal:
            return UserPayload(errors=user_errors(refusal.problems))
        return UserPayload(user=User.from_row(row))


async def _set_kyc(info: Info, user_id: strawberry.ID, status: str) -> UserPayload:
    pk = parse_id(user_id)
    if pk is None:
        return _no_such_user(user_id)
    try:
        row = await info.context.services.accounts.set_kyc_status(pk, status)
    except Refused as refusal:
        return UserPayload(errors=user_errors(refusal.problems))
    return UserPayload(user=User.from_row(row))
