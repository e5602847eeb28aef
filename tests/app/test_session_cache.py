"""Each API process remembers a checked session for a moment; a logout or a newer login in
any process (here: another SessionStore on the same Redis) ends it everywhere."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.accounts.sessions import TRADE, SessionStore, Viewer
from app.services import Services

VIEWER_PERMISSIONS = frozenset({TRADE})


class Counting:
    """Wraps the store's check script: how many times Redis was asked."""

    def __init__(self, store: SessionStore) -> None:
        self.calls = 0
        self._script = store._check
        store._check = self  # type: ignore[assignment]

    async def __call__(self, **kwargs: Any) -> Any:
        self.calls += 1
        return await self._script(**kwargs)


@pytest.fixture
async def stores(services: Services) -> AsyncIterator[tuple[SessionStore, SessionStore]]:
    """Two processes' stores, both remembering checks for a minute (so only a revocation
    can end what they remember within the test)."""
    here, there = (
        SessionStore(services.redis, services.keys, 3600, cache_seconds=60) for _ in range(2)
    )
    yield here, there
    await here.stop()
    await there.stop()


async def listening(store: SessionStore, user_id: int, token: str) -> None:
    """Check once, then wait until the store hears revocations (its first check starts it)."""
    await store.check(user_id, token)
    for _ in range(1000):
        if store._listening:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the store never subscribed to revocations")


async def forgotten(store: SessionStore, user_id: int) -> None:
    """Wait until ``store`` has heard that ``user_id``'s session changed."""
    for _ in range(1000):
        if user_id not in store._checked:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the revocation was never heard")


async def test_a_checked_session_is_not_asked_of_redis_again(
    stores: tuple[SessionStore, SessionStore],
) -> None:
    here, _ = stores
    user_id = 10_000_101
    await here.open(user_id, "token", VIEWER_PERMISSIONS)
    await listening(here, user_id, "token")
    redis = Counting(here)
    for _ in range(3):
        assert await here.check(user_id, "token") == Viewer(user_id, VIEWER_PERMISSIONS)
    assert redis.calls == 1  # the first check after subscribing; then remembered
    assert await here.check(user_id, "token", fresh=True) is not None
    assert redis.calls == 2  # a fresh check always asks
    assert await here.check(user_id, "another token") is None
    assert redis.calls == 3


async def test_a_logout_in_this_process_ends_the_session_at_once(
    stores: tuple[SessionStore, SessionStore],
) -> None:
    here, _ = stores
    user_id = 10_000_102
    await here.open(user_id, "token", VIEWER_PERMISSIONS)
    await listening(here, user_id, "token")
    assert await here.check(user_id, "token") is not None
    assert await here.close(user_id, "token") is True
    assert await here.check(user_id, "token") is None


@pytest.mark.parametrize("how", ["logout", "newer login"])
async def test_a_logout_or_login_in_another_process_ends_what_this_one_remembers(
    stores: tuple[SessionStore, SessionStore], how: str
) -> None:
    here, there = stores
    user_id = 10_000_103 if how == "logout" else 10_000_104
    await there.open(user_id, "token", VIEWER_PERMISSIONS)
    await listening(here, user_id, "token")
    assert await here.check(user_id, "token") is not None
    assert user_id in here._checked
    if how == "logout":
        assert await there.close(user_id, "token") is True
    else:
        await there.open(user_id, "newer", VIEWER_PERMISSIONS)
    await forgotten(here, user_id)
    assert await here.check(user_id, "token") is None
    assert (await here.check(user_id, "newer") is not None) is (how == "newer login")


async def test_nothing_is_remembered_without_a_cache(services: Services) -> None:
    store = SessionStore(services.redis, services.keys, 3600)
    user_id = 10_000_105
    await store.open(user_id, "token", VIEWER_PERMISSIONS)
    redis = Counting(store)
    for _ in range(3):
        assert await store.check(user_id, "token") is not None
    assert redis.calls == 3
    assert store._listener is None
