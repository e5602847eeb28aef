"""Access tokens: signed JWTs (HS256) that name a user and one login.

A token alone is not enough to be let in: the caller must also still hold the Redis session
it was issued with (see :mod:`app.accounts.sessions`), so logging out or a newer login ends
it at once even though the signature is still valid.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

ALGORITHM = "HS256"
ISSUER = "tradegraph"


class InvalidToken(Exception):
    """The token is forged, malformed, expired or not ours; ``str()`` says which, for clients."""


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str
    user_id: int
    token_id: str
    expires_at: datetime


def issue_access_token(
    secret: str, user_id: int, *, ttl: timedelta, now: datetime | None = None
) -> AccessToken:
    issued_at = now or datetime.now(UTC)
    expires_at = issued_at + ttl
    token_id = uuid.uuid4().hex
    claims = {
        "iss": ISSUER,
        "sub": str(user_id),
        "jti": token_id,
        "iat": int(issued_at.timestamp()),
        "exp": int(expires_at.timestamp()),
    }
    token = jwt.encode(claims, secret, algorithm=ALGORITHM)
    return AccessToken(token=token, user_id=user_id, token_id=token_id, expires_at=expires_at)


# Tokens whose signature and claims were verified, with their expiry (epoch seconds): a
# token is the same string on every request of a session, and verifying it (HMAC, base64,
# JSON, claims) was ~10 % of a light request's CPU. Only valid tokens are kept; expiry is
# still checked on every use. Bounded: emptied when full.
_VERIFIED: dict[tuple[str, str], tuple[int, AccessToken]] = {}
VERIFIED_CACHE_SIZE = 10_000


def decode_access_token(secret: str, token: str) -> AccessToken:
    """Verify signature, issuer and expiry; raise :class:`InvalidToken` if any fails."""
    verified = _VERIFIED.get((secret, token))
    if verified is not None:
        expires, access = verified
        if time.time() < expires:
            return access
        del _VERIFIED[(secret, token)]
        raise InvalidToken("access token expired; log in again")
    access = _verify(secret, token)
    if len(_VERIFIED) >= VERIFIED_CACHE_SIZE:
        _VERIFIED.clear()
    _VERIFIED[(secret, token)] = (int(access.expires_at.timestamp()), access)
    return access


def _verify(secret: str, token: str) -> AccessToken:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["sub", "jti", "exp", "iat", "iss"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("access token expired; log in again") from exc
    except jwt.InvalidTokenError as exc:
        raise InvalidToken("invalid access token") from exc
    subject, token_id = claims["sub"], claims["jti"]
    if not (isinstance(subject, str) and subject.isdigit() and isinstance(token_id, str)):
        raise InvalidToken("invalid access token")
    return AccessToken(
        token=token,
        user_id=int(subject),
        token_id=token_id,
        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
    )


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive).

    No header means no credentials (``None``); any other scheme or an empty token is a
    credential we refuse (:class:`InvalidToken`), not an anonymous call.
    """
    if header is None or not header.strip():
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("the Authorization header must be 'Bearer <token>'")
    return token.strip()
