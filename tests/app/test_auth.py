from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from app.kit.auth import InvalidToken, bearer_token, decode_access_token, issue_access_token

SECRET = "s" * 64


def test_a_token_round_trips_with_its_claims() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    issued = issue_access_token(SECRET, 42, ttl=timedelta(hours=24), now=now)
    claims = jwt.decode(issued.token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {
        "iss": "tradegraph",
        "sub": "42",
        "jti": issued.token_id,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(hours=24)).timestamp()),
    }
    fresh = issue_access_token(SECRET, 42, ttl=timedelta(hours=1))
    decoded = decode_access_token(SECRET, fresh.token)
    assert (decoded.user_id, decoded.token_id) == (42, fresh.token_id)
    assert fresh.token_id != issued.token_id


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (issue_access_token("other" * 10, 1, ttl=timedelta(hours=1)).token, "invalid access token"),
        (
            issue_access_token(
                SECRET, 1, ttl=timedelta(hours=1), now=datetime.now(UTC) - timedelta(hours=2)
            ).token,
            "access token expired; log in again",
        ),
        (jwt.encode({"sub": "1", "exp": 9999999999}, SECRET), "invalid access token"),
        (
            jwt.encode(
                {"iss": "tradegraph", "sub": "x", "jti": "j", "iat": 1, "exp": 9999999999}, SECRET
            ),
            "invalid access token",
        ),
        (jwt.encode({"sub": "1"}, SECRET, algorithm="HS512"), "invalid access token"),
        ("e30.e30.", "invalid access token"),
    ],
    ids=["wrong-secret", "expired", "missing-claims", "non-numeric-sub", "other-alg", "alg-none"],
)
def test_bad_tokens_are_refused(token: str, message: str) -> None:
    with pytest.raises(InvalidToken, match=f"^{message}$"):
        decode_access_token(SECRET, token)


def test_bearer_headers() -> None:
    assert bearer_token(None) is None
    assert bearer_token("  ") is None
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc ") == "abc"
    for bad in ("Basic abc", "Bearer", "Bearer  ", "abc"):
        with pytest.raises(InvalidToken):
            bearer_token(bad)


def test_a_verified_token_is_still_refused_once_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:

    issued = issue_access_token(SECRET, 7, ttl=timedelta(minutes=5))
    first = decode_access_token(SECRET, issued.token)
    assert decode_access_token(SECRET, issued.token) is first  # verified once, then kept
    expiry = issued.expires_at.timestamp()
    monkeypatch.setattr("app.kit.auth.time.time", lambda: expiry)
    with pytest.raises(InvalidToken, match="access token expired; log in again"):
        decode_access_token(SECRET, issued.token)


def test_a_token_verified_with_one_secret_is_not_accepted_with_another() -> None:
    issued = issue_access_token(SECRET, 8, ttl=timedelta(minutes=5))
    assert decode_access_token(SECRET, issued.token).user_id == 8
    with pytest.raises(InvalidToken, match="invalid access token"):
        decode_access_token("t" * 64, issued.token)
