"""Clients of the real API process: HTTP calls and background subscriptions (gql)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from gql import Client, GraphQLRequest
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport
from redis.asyncio import Redis

from tests.support.processes import Platform


class Api:
    """One caller of the real API over HTTP."""

    def __init__(
        self, platform: Platform, token: str | None = None, *, url: str | None = None
    ) -> None:
        """``url``: another API process of the platform (e.g. one from ``start_api_on``)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        base = url or platform.url
        self.transport = HTTPXAsyncTransport(url=f"{base}/graphql", headers=headers)
        self.token = token

    async def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        async with Client(transport=self.transport) as session:
            result: dict[str, Any] = await session.execute(
                GraphQLRequest(query, variable_values=variables)
            )
            return result


class Watch:
    """A subscription running in the background, collecting what it is sent."""

    def __init__(self, platform: Platform, query: str, token: str | None, protocol: str) -> None:
        self.items: list[dict[str, Any]] = []
        self._query, self._token, self._protocol = query, token, protocol
        self._url = platform.url.replace("http://", "ws://") + "/graphql"
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        transport = WebsocketsTransport(
            url=self._url,
            subprotocols=[self._protocol],
            init_payload={"Authorization": f"Bearer {self._token}"} if self._token else {},
        )
        async with Client(transport=transport) as session:
            async for item in session.subscribe(GraphQLRequest(self._query)):
                self.items.append(item)

    def start(self) -> Watch:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        assert self._task is not None
        if self._task.done():
            self._task.result()  # raise what it raised
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def stop_quietly(self) -> None:
        """Stop a subscription that has already failed (its error was checked)."""
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task

    async def wait_until(
        self, done: Callable[[list[dict[str, Any]]], bool], seconds: float = 10.0
    ) -> list[dict[str, Any]]:
        """The items once ``done(items)`` holds."""
        async with asyncio.timeout(seconds):
            while True:
                if self._task is not None and self._task.done():
                    self._task.result()
                if done(self.items):
                    return self.items
                await asyncio.sleep(0.02)

    async def wait_for(self, count: int, seconds: float = 10.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(seconds):
            while True:
                if self._task is not None and self._task.done():
                    self._task.result()
                if len(self.items) >= count:
                    return self.items
                await asyncio.sleep(0.02)


async def subscribed(redis: Redis, channel: str, watch: Watch, seconds: float = 10.0) -> None:
    """Wait until the API listens on ``channel`` for ``watch`` (its subscription is live)."""
    async with asyncio.timeout(seconds):
        while not (await redis.pubsub_numsub(channel))[0][1]:
            await watch.wait_for(0)  # raises what the subscription raised, if it failed
            await asyncio.sleep(0.02)


async def listening(redis: Redis, channel: str, seconds: float = 10.0) -> None:
    """Wait until some process is subscribed to ``channel`` on Redis."""
    for _ in range(int(seconds / 0.02)):
        if (await redis.pubsub_numsub(channel))[0][1]:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"nobody subscribed to {channel} in {seconds}s")
