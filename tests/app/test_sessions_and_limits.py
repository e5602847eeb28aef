"""The Redis side of auth and rate limiting, against the real Redis of the run."""

from __future__ import annotations

from app.accounts.sessions import ADMIN, TRADE, SessionStore, Viewer
from app.kit.ratelimit import Caller, Exceeded, RateLimiter
from app.services import Services


async def test_a_session_accepts_only_its_current_token(services: Services) -> None:
    store = SessionStore(services.redis, services.keys, ttl_seconds=3600)
    user_id = 10_000_001
    await store.open(user_id, "first", frozenset({TRADE}))
    assert await store.check(user_id, "first") == Viewer(user_id, frozenset({TRADE}))
    await store.open(user_id, "second", frozenset({TRADE, ADMIN}))
    assert await store.check(user_id, "first") is None
    assert await store.check(user_id, "second") == Viewer(user_id, frozenset({TRADE, ADMIN}))
    assert await services.redis.ttl(services.keys.session(user_id)) <= 3600

    assert await store.close(user_id, "first") is False  # a stale token ends nothing
    assert await store.check(user_id, "second") is not None
    assert await store.close(user_id, "second") is True
    assert await store.check(user_id, "second") is None
    # checking an ended session does not bring back a key without a TTL
    assert await services.redis.exists(services.keys.session(user_id)) == 0


async def test_rate_limit_counters_follow_the_seed_keys(services: Services) -> None:
    settings = services.settings.model_copy(
        update={
            "rate_limit_per_user": 3,
            "rate_limit_per_ip": 2,
            "rate_limits_per_ip": {"login": 1},
            "rate_limits_per_user": {"placeOrder": 5},
        }
    )
    limiter = RateLimiter(services.redis, services.keys, settings)
    user, anonymous = Caller(user_id=20_000_001, ip="10.9.8.7"), Caller(None, "10.9.8.6")

    assert limiter.rule(user, "placeOrder").key == services.keys.rate_limit(
        "20000001", "placeOrder"
    )
    assert limiter.rule(user, "login").key == services.keys.rate_limit("ip:10.9.8.7", "login")
    assert limiter.rule(anonymous, "markets").limit == 2

    assert await limiter.hit(user, ["placeOrder"] * 5) is None
    exceeded = await limiter.hit(user, ["placeOrder", "me"])
    assert isinstance(exceeded, Exceeded)
    assert (exceeded.endpoint, exceeded.limit) == ("placeOrder", 5)
    assert 1 <= exceeded.retry_after <= 60
    key = services.keys.rate_limit("20000001", "placeOrder")
    assert await services.redis.get(key) == "6"
    assert 0 < await services.redis.ttl(key) <= 60

    assert await limiter.hit(anonymous, ["login"]) is None
    assert await limiter.hit(anonymous, ["login"]) is not None
    assert await limiter.hit(anonymous, []) is None


async def test_rate_limits_can_be_turned_off(services: Services) -> None:
    settings = services.settings.model_copy(
        update={"rate_limit_enabled": False, "rate_limit_per_ip": 1}
    )
    limiter = RateLimiter(services.redis, services.keys, settings)
    caller = Caller(None, "10.9.8.5")
    for _ in range(3):
        assert await limiter.hit(caller, ["markets"]) is None
    assert await services.redis.exists(services.keys.rate_limit("ip:10.9.8.5", "markets")) == 0
